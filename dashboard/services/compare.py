"""The numbers of the Compare page: the three MNIST models with their training budgets.

Everything but `time_sampling` (a fresh measurement on this server) comes from
`pretrained/manifest.json` (through `catalogue.py`). Returns pandas tables for `charts.py` and
sentences for the page.
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from dashboard.services import catalogue
from dashboard.services.catalogue import Catalogue, PretrainedModel
from dashboard.services.wording import count, duration, spread

# What a reader must know beside a published number, by family: where the paper's set-up differs
# from the one these checkpoints were trained with.
PUBLISHED_NOTES = {"nice": "a different set-up: no logit pre-processing"}


def published_note(m: PretrainedModel) -> str:
    """What differs between the paper's set-up and this checkpoint's, beside the published tick
    (it completes "<model>'s published <number> comes from ...")."""
    if not m.published_bits_per_dim:
        return ""
    if m.dequantizer == "variational":  # the papers' numbers are of uniform dequantisation
        return "a set-up with uniform noise (this one learns its noise)"
    return PUBLISHED_NOTES.get(m.family, "")


def budget(m: PretrainedModel) -> str:
    """What a model cost to train, on two short lines."""
    return (f"{count(m.params)} parameters, {count(m.images_seen)} images seen\n"
            f"{duration(m.wall_time_s)} on {m.hardware}")


def compared(cat: Catalogue) -> list[PretrainedModel]:
    return [cat.models[n] for n in catalogue.COMPARED if n in cat.models]


def models_frame(cat: Catalogue) -> pd.DataFrame:
    """One row per compared model: measured and published bits/dim, the published source and any
    caveat, parameters and the training budget (for `charts.bits_chart` and `charts.size_chart`)."""
    rows = []
    for m in compared(cat):
        note = published_note(m)
        label = f"published {m.published_bits_per_dim:.2f}" if m.published_bits_per_dim else ""
        rows.append({"model": m.title, "bits_per_dim": m.test_bits_per_dim,
                     "spread": spread(m.test_bits_per_dim_std), "published": m.published_bits_per_dim,
                     "published_label": label, "published_note": note,
                     "published_source": m.published_source or "source not recorded",
                     "params": m.params, "images_seen": m.images_seen, "wall_time_s": m.wall_time_s,
                     "training": duration(m.wall_time_s), "hardware": m.hardware, "budget": budget(m)})
    columns = ["model", "bits_per_dim", "spread", "published", "published_label", "published_source",
               "published_note", "params", "images_seen", "wall_time_s", "training", "hardware", "budget"]
    return pd.DataFrame(rows, columns=columns)


def curves_frame(cat: Catalogue) -> pd.DataFrame:
    """The training curves of the manifest: model, step, images_seen, bits_per_dim."""
    points = [{"model": m.title, "step": p.get("step"), "images_seen": p.get("images_seen"),
               "bits_per_dim": p.get("test_bits_per_dim")} for m in compared(cat) for p in m.curve]
    frame = pd.DataFrame(points, columns=["model", "step", "images_seen", "bits_per_dim"])
    frame[["step", "images_seen", "bits_per_dim"]] = frame[["step", "images_seen", "bits_per_dim"]].apply(
        pd.to_numeric, errors="coerce")
    return frame.dropna(subset=["images_seen", "bits_per_dim"])


def curve_images(m: PretrainedModel) -> str:
    """The images a model's training curve was measured on: "the first 1,000 test images" or
    "the first 1,000 validation images" (training images held out), from its manifest entry."""
    if m.curve_eval_size is None:
        return f"{m.curve_split} images"
    return f"the first {m.curve_eval_size:,} {m.curve_split} images"


def curve_subtitle(cat: Catalogue, titles: list[str]) -> list[str]:
    """The line(s) under a curve chart's title: where the curves of the models `titles` were measured."""
    where = {m.title: curve_images(m) for m in compared(cat) if m.title in titles}
    if len(set(where.values())) <= 1:
        return [f"on {next(iter(where.values()), 'test images')}, during training"]
    return [f"{title}: on {images}, during training" for title, images in where.items()]


def curve_caption(cat: Catalogue) -> str:
    """What the curves measure and why their last points differ from the bars."""
    groups: dict[str, list[str]] = {}
    for m in compared(cat):
        groups.setdefault(curve_images(m), []).append(m.title)
    if len(groups) == 1:
        where = next(iter(groups))
    else:
        where = " or ".join(f"{images} ({', '.join(titles)})" for images, titles in groups.items())
    held_out = any("validation" in images for images in groups)
    return (f"The training logs: bits/dim on {where}, measured during training (one fixed noise draw), so the "
            "last point is close to, not equal to, the bar above (all 10,000 test images, 5 draws)."
            + (" Validation images are training images held out from training, so that settings are chosen "
               "without looking at the test set." if held_out else ""))


def main_table(cat: Catalogue) -> pd.DataFrame:
    """The few columns that matter (the training budget is written under each bar); `full_table` has the rest."""
    number = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    return pd.DataFrame([{
        "model": m.title, "test bits/dim": number(m.test_bits_per_dim, ".3f"),
        "published": number(m.published_bits_per_dim, ".2f"), "parameters": number(m.params, ","),
    } for m in compared(cat)], columns=["model", "test bits/dim", "published", "parameters"])


def full_table(cat: Catalogue) -> pd.DataFrame:
    return pd.DataFrame([{
        "model": m.title, "test bits/dim": m.test_bits_per_dim, "± std over draws": spread(m.test_bits_per_dim_std),
        "test images": m.n_test, "noise draws": m.draws, "dequantisation": m.dequantizer,
        "published bits/dim": m.published_bits_per_dim,
        "published in": m.published_source, "parameters": m.params, "training images seen": m.images_seen,
        "epochs": m.epochs, "training time (s)": m.wall_time_s, "hardware": m.hardware,
        "64 samples (s)": m.sample_time_64_s, "sampling measured on": m.sample_time_hardware, "command": m.command,
    } for m in compared(cat)])


def caveats(cat: Catalogue) -> str:
    """A plain paragraph, from the manifest's numbers, on what the comparison can and cannot tell."""
    ms = [m for m in compared(cat) if m.test_bits_per_dim is not None]
    if len(ms) < 2:
        return ""
    best, *rest = sorted(ms, key=lambda m: m.test_bits_per_dim)
    runner = rest[0]
    gap = runner.test_bits_per_dim - best.test_bits_per_dim
    sized = [m for m in ms if m.params]
    sizes = ", ".join(f"{m.title} {count(m.params)}" for m in sized)
    ratio = max(m.params for m in sized) / min(m.params for m in sized) if len(sized) > 1 else 1.0
    times = [m.wall_time_s for m in ms if m.wall_time_s]
    stds = [m.test_bits_per_dim_std for m in ms if m.test_bits_per_dim_std is not None]
    text = (f"**What this comparison can and cannot tell.** {best.title} scored best (lowest), "
            f"{best.test_bits_per_dim:.3f} bits/dim, {gap:.3f} below {runner.title}. ")
    if sized:
        text += f"The models differ in size ({sizes} parameters, a factor of {ratio:.0f} apart). "
    if times:
        hardware = {m.hardware for m in ms if m.hardware}
        text += f"Each was trained once, with one seed, for {duration(min(times))} to {duration(max(times))}"
        if len(hardware) == 1:
            text += f" on {next(iter(hardware))}. "
        elif hardware:
            each = "; ".join(f"{m.title} on {m.hardware}" for m in ms if m.hardware)
            text += f", on different hardware: {each}. "
        else:
            text += ". "
    if stds:
        text += (f"The ± over noise draws (at most {max(stds):.4f}) only says how exactly each checkpoint was "
                 "measured; how much another seed or a longer run would move a model is not measured, so "
                 + (f"the {gap:.3f} bits/dim between {best.title} and {runner.title} is not evidence that one "
                    "architecture is better. " if gap < 0.05 else
                    "a gap of a few hundredths of a bit/dim between two models would not be evidence either. "))
    learned = [m.title for m in ms if m.dequantizer == "variational"]
    if learned and len(learned) < len(ms):
        uniform = [m.title for m in ms if m.dequantizer != "variational"]
        text += (f"{' and '.join(learned)} {'learn' if len(learned) > 1 else 'learns'} the dequantisation noise "
                 f"(a variational dequantiser), {' and '.join(uniform)} {'use' if len(uniform) > 1 else 'uses'} "
                 "uniform noise: both are upper bounds on the same discrete likelihood, but the learned noise "
                 "tightens the bound by itself, so part of any gap between the two kinds is the noise, not the "
                 "architecture. ")
    text += ("A large gap between models trained on the same data with similar budgets would be evidence; a gap "
             "to a published number from a different set-up (see the notes at the ticks) is not.")
    return text


def time_sampling(name: str, n: int = 64, seed: int = 0) -> float | None:
    """Seconds this server takes to draw `n` samples now (not cached: a fresh measurement)."""
    flow, _ = catalogue.pretrained_flow(name)
    if flow is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        flow.sample(n, generator=generator)
    return time.perf_counter() - start
