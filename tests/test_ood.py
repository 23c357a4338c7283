"""Out-of-distribution maths (flowcore.ood), the statistics script, and the shipped statistics file.

The last test is CI's check of `pretrained/ood_stats.npz`: it rebuilds the image sets, recomputes
a sample of every set with the shipped models and the per-image noise seeds in the file, and
fails when a number or a checkpoint differs from what the file says.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flowcore import ood
from flowcore.data import DataNotFound, load_images
from flowcore.models import build
from scripts import ood as script

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "ood_stats.npz"
CHECKED_PER_SET = 100  # images of each set CI recomputes (spread over the set), per model
REGENERATE = "regenerate it with `python -m scripts.ood --data-dir <MNIST folder>` (README, Out of distribution)"


# --- Outlier sets ----------------------------------------------------------------------------


def test_constant_images_are_one_per_grey_level():
    x = ood.constant_images()
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x.amin(dim=(1, 2, 3)), torch.arange(256).to(torch.uint8))
    assert torch.equal(x.amax(dim=(1, 2, 3)), x.amin(dim=(1, 2, 3)))


def test_uniform_noise_is_seeded_and_covers_every_level():
    a, b, c = ood.uniform_noise(50, 1), ood.uniform_noise(50, 1), ood.uniform_noise(50, 2)
    assert a.shape == (50, 1, 28, 28) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a.unique()) == 256 and abs(a.float().mean() - 127.5) < 2


def test_inverted_is_255_minus_x():
    x = torch.tensor([[[[0, 1], [254, 255]]]], dtype=torch.uint8)
    assert ood.inverted(x).tolist() == [[[[255, 254], [1, 0]]]]


def test_shift_moves_each_image_by_the_given_pixels_in_one_of_eight_directions():
    n = 200
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 12, 15] = 200  # one bright pixel, at least 4 pixels from every edge
    x[:, 0, 0, 0] = 100  # a corner pixel, which leaves the frame unless the shift moves it inwards
    moved = ood.shifted(x, 4, seed=3)
    assert torch.equal(moved, ood.shifted(x, 4, seed=3))
    offsets = set()
    for image in moved[:, 0]:
        (row, col), = (image == 200).nonzero().tolist()
        dy, dx = row - 12, col - 15
        offsets.add((dy, dx))
        corner = (image == 100).nonzero().tolist()
        assert corner == ([[dy, dx]] if dy >= 0 and dx >= 0 else [])  # kept if it stays inside, else lost
        assert int((image > 0).sum()) == 1 + len(corner)  # what enters the frame is black
    assert offsets == {(4 * dy, 4 * dx) for dy, dx in ood.SHIFTS}  # all 8 directions, never none


def test_each_image_gets_the_noise_of_its_own_seed():
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    seeds = np.array([5, 9, 11, 2, 7, 100])
    whole = ood.dequantize_seeded(x, seeds)
    assert torch.equal(whole[3:5], ood.dequantize_seeded(x[3:5], seeds[3:5]))
    assert ((whole - x) >= 0).all() and ((whole - x) < 1).all()
    assert not torch.equal(whole[0] - x[0], whole[1] - x[1])


# --- Scores and detectors -----------------------------------------------------------------------


def test_scores_are_the_exact_breakdown_summing_to_the_likelihood():
    torch.manual_seed(0)
    flow = build("glow", (1, 28, 28), hidden=8, steps=1, levels=2).eval()
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    seeds = np.arange(5)
    s = ood.score_images(flow, x, seeds, batch_size=2)
    with torch.no_grad():
        expected = -flow.log_prob(ood.dequantize_seeded(x, seeds)).double() / (784 * math.log(2))
    np.testing.assert_allclose(s[ood.TOTAL], expected.numpy(), rtol=0, atol=1e-5)
    terms = [n for n in s if n != ood.TOTAL]
    np.testing.assert_allclose(sum(s[n] for n in terms), s[ood.TOTAL], atol=1e-9)
    last = ood.coarsest_level_terms(terms)
    assert last == ["level 2 log-det", "final latent (392 dims)"], terms
    np.testing.assert_allclose(ood.last_scale_bits(s), s[last[0]] + s[last[1]])


def test_last_scale_needs_several_scales():
    flow = build("nice", (1, 28, 28), hidden=8, layers=1, couplings=2).eval()
    s = ood.score_images(flow, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), np.arange(2))
    assert ood.coarsest_level_terms(list(s)) == [] and ood.last_scale_bits(s) is None
    names = ["pre-processing (logit)", "level 1 log-det", "level 1 factored-out latent (392 dims)",
             "level 2 log-det", "level 2 factored-out latent (196 dims)", "level 3 log-det", "final latent (196 dims)"]
    assert ood.coarsest_level_terms(names) == ["level 3 log-det", "final latent (196 dims)"]


def test_png_length_measures_complexity():
    flat = ood.png_bits_per_dim(ood.constant_images()[[0, 128]])
    noise = ood.png_bits_per_dim(ood.uniform_noise(2, 0))
    assert (flat < 1.5).all() and (noise > 8).all()  # noise cannot be compressed; headers cost a little
    np.testing.assert_allclose(ood.complexity_score(np.array([3.0, 9.0]), np.array([0.5, 8.5])), [2.5, 0.5])


def test_typicality_statistic_by_hand():
    bits = np.array([1.0, 2.0, 3.0, 7.0])
    # one batch of all four: |mean - typical| = |13 / 4 - 2|
    assert ood.typicality_score(bits, typical=2.0, size=4, seed=0).tolist() == [1.25]
    # batches of one: |x - typical| for every image, in the drawn order
    assert sorted(ood.typicality_score(bits, typical=2.0, size=1, seed=0).tolist()) == [0.0, 1.0, 1.0, 5.0]
    # batches of two: whatever the draw, each is a pair of distinct images, none used twice
    idx = ood.batches(4, 2, seed=5)
    assert idx.shape == (2, 2) and sorted(idx.ravel().tolist()) == [0, 1, 2, 3]
    by_hand = [abs((bits[a] + bits[b]) / 2 - 2.0) for a, b in idx]
    assert ood.typicality_score(bits, typical=2.0, size=2, seed=5).tolist() == by_hand
    assert ood.batches(1000, 25, seed=0).shape == (40, 25) and ood.batches(256, 25, seed=0).shape == (10, 25)


def test_auroc_by_hand():
    # every outlier/inlier pair: 2.5 beats 1 and 2, loses to 3; 4 beats all three -> 5 of 6
    assert ood.auroc([1, 2, 3], [2.5, 4]) == pytest.approx(5 / 6)
    # a tie counts half: (2 vs 1) 1, (2 vs 2) 0.5, (3 vs 1) 1, (3 vs 2) 1 -> 3.5 of 4
    assert ood.auroc([1, 2], [2, 3]) == pytest.approx(0.875)
    assert ood.auroc([5, 6], [1, 2]) == 0.0  # below 0.5 stays below: the outliers look *more* typical
    assert ood.auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError):
        ood.auroc([], [1.0])


def test_auroc_equals_pair_counting_and_the_area_under_the_roc_curve():
    rng = np.random.default_rng(0)
    inliers, outliers = rng.integers(0, 20, 60).astype(float), rng.integers(5, 25, 45).astype(float)  # many ties
    pairs = [(o > i) + 0.5 * (o == i) for o, i in itertools.product(outliers, inliers)]
    assert ood.auroc(inliers, outliers) == pytest.approx(np.mean(pairs), abs=1e-12)
    fpr, tpr = ood.roc_curve(inliers, outliers)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(np.mean(pairs), abs=1e-12)


# --- The script ------------------------------------------------------------------------------------


def tiny_data(n: int = 40) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    images = lambda k: torch.randint(0, 256, (k, 1, 28, 28), generator=g, dtype=torch.uint8)  # noqa: E731
    return {name: {"test": images(n), "train": images(2 * n)} for name in ("mnist", "fashion-mnist")}


def tiny_models() -> dict[str, script.Model]:
    torch.manual_seed(0)
    return {"nice-mnist": script.Model(build("nice", (1, 28, 28), hidden=8, layers=1, couplings=2), "mnist"),
            "glow-fashion": script.Model(build("glow", (1, 28, 28), hidden=8, steps=1, levels=2), "fashion-mnist",
                                         validation=30)}


def test_statistics_file_round_trip(tmp_path):
    data = tiny_data()
    arrays, meta = script.compute(tiny_models(), data, n=30)
    path = ood.save_statistics(tmp_path / "stats.npz", arrays, meta)
    again, meta_again = ood.read_statistics(path)
    assert meta_again == json.loads(json.dumps(meta)) and set(again) == set(arrays)
    assert list(meta["sets"]) == list(script.SETS)
    assert {k: v["n"] for k, v in meta["sets"].items()} == {**dict.fromkeys(script.SETS, 30), "constant": 256}
    fashion = meta["models"]["glow-fashion"]
    assert (fashion["own"], fashion["other"]) == ("Fashion-MNIST test", "MNIST test")
    assert fashion["last_scale_terms"] == ["level 2 log-det", "final latent (392 dims)"]
    assert meta["models"]["nice-mnist"]["last_scale_terms"] == []
    # the typical value comes from the validation split (the last 30 of 80 training images), not the test set
    source = again[ood.stat_key("glow-fashion", ood.REFERENCE, "source")]
    assert source.min() >= 50 and len(set(source.tolist())) == 30
    assert fashion["typical_bits_per_dim"] == pytest.approx(
        again[ood.stat_key("glow-fashion", ood.REFERENCE, ood.TOTAL)].mean(), rel=1e-6)
    # the sets are rebuilt identically from the same data
    sets = script.build_sets(data["mnist"]["test"], data["fashion-mnist"]["test"], 30)
    for key, s in sets.items():
        assert (s.seeds == again[ood.stat_key(key, "seeds")]).all()
        assert (s.source == again[ood.stat_key(key, "source")]).all()
    assert torch.equal(sets["inverted digits"].images, 255 - sets["MNIST test"].images)


def test_without_fashion_the_file_says_so_and_keeps_the_mnist_models():
    data = tiny_data()
    del data["fashion-mnist"]
    arrays, meta = script.compute(tiny_models(), data, n=30, missing=["Fashion-MNIST: not found"])
    assert "Fashion-MNIST test" not in meta["sets"] and list(meta["models"]) == ["nice-mnist"]
    assert meta["models"]["nice-mnist"]["other"] == "Fashion-MNIST test"  # the page reports it as missing
    assert meta["missing"] == ["Fashion-MNIST: not found"]


# --- The shipped file ------------------------------------------------------------------------------


def test_shipped_statistics_match_the_shipped_models(mnist_dir):
    """Recompute 100 images of every set (and of each model's reference set) with the shipped checkpoints
    and the file's own seeds; every bits/dim must match the file to 1e-4."""
    assert SHIPPED.is_file(), f"{SHIPPED} is missing: {REGENERATE}"
    arrays, meta = ood.read_statistics(SHIPPED)
    manifest = json.loads((REPO / "pretrained" / "manifest.json").read_text())["models"]
    data = {"mnist": {s: load_images("mnist", s, mnist_dir, download=False)[0] for s in ("test", "train")}}
    if "Fashion-MNIST test" in meta["sets"] or "glow-fashion" in meta["models"]:
        try:
            data["fashion-mnist"] = {s: load_images("fashion-mnist", s, mnist_dir, download=False)[0]
                                     for s in ("test", "train")}
        except DataNotFound as err:
            pytest.skip(f"the shipped file covers Fashion-MNIST, which is not installed here: {err}")
    sets = script.build_sets(data["mnist"]["test"], data.get("fashion-mnist", {}).get("test"), meta["n"])
    assert list(sets) == list(meta["sets"]), f"the sets changed: {REGENERATE}"
    for model_id in set(script.MODELS) & set(manifest):
        assert model_id in meta["models"], f"{model_id} is in the manifest but not in {SHIPPED.name}: {REGENERATE}"
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        for model_id, info in meta["models"].items():
            listed = model_id in manifest and manifest[model_id].get("file")
            model = script.load_model(REPO / "pretrained" / listed if listed else REPO / info["checkpoint"])
            flow = model.flow.eval()
            assert script.fingerprint(flow) == info["fingerprint"], \
                f"{model_id}: the checkpoint changed since {SHIPPED.name} was made: {REGENERATE}"
            ref, _ = script.reference_set(data[model.dataset]["train"], model.validation, meta["n"], model_id)
            assert (ref.seeds == arrays[ood.stat_key(model_id, ood.REFERENCE, "seeds")]).all()
            for key, s in [*sets.items(), (ood.REFERENCE, ref)]:
                pick = np.linspace(0, len(s.images) - 1, CHECKED_PER_SET).astype(int)
                got = ood.score_images(flow, s.images[pick], s.seeds[pick])[ood.TOTAL]
                stored = arrays[ood.stat_key(model_id, key, ood.TOTAL)][pick]
                worst = float(np.abs(got - stored).max())
                assert worst < 1e-4, f"{model_id}, {key}: bits/dim differ from the file by {worst:.2g}: {REGENERATE}"
    finally:
        torch.set_num_threads(threads)


def test_the_readme_auroc_table_is_the_pages_table_of_the_shipped_statistics():
    """The README's AUROC table is generated from `pretrained/ood_stats.npz` by the page's own code."""
    from scripts.ood_table import shipped, table

    generated = table(shipped(SHIPPED))
    assert generated in (REPO / "README.md").read_text(), "rewrite it with python -m scripts.ood_table --write"
    fashion = next(line for line in generated.splitlines() if line.startswith("| Glow (Fashion-MNIST) | Likelihood |"))
    assert fashion.split(" | ")[2].startswith("**0.")  # the paradox: digits scored as more in-distribution
