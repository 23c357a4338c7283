"""The README's results table, from pretrained/manifest.json: `python -m scripts.results_table [--write]`.

Prints the Markdown table, or with `--write` puts it into README.md between the two
`results-table` markers (what `scripts/release_pretrained.py` does after every release).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dashboard.services.wording import spread

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results-table:begin (python -m scripts.results_table --write) -->", "<!-- results-table:end -->"
TARGETS = {  # model id -> (what is compared, the bound, its text); the open goals of the MNIST models
    "nice-mnist": ("test_bits_per_dim", 4.50, "<= 4.50"),
    "realnvp-mnist": ("test_bits_per_dim", 1.10, "<= 1.10"),
    "glow-mnist": ("test_bits_per_dim", 1.10, "<= 1.10"),
    "glow-mnist-conditional": ("test_accuracy", 0.97, "accuracy >= 97%"),
}


def _bits(m: dict) -> str:
    text = f"{m['test_bits_per_dim']:.3f} ± {spread(m['test_bits_per_dim_std'])}"
    if m.get("classes"):
        text += f" (marginal); test accuracy {m['test_accuracy']:.2%}"
    if m.get("dataset") == "fashion-mnist":
        text += " (Fashion-MNIST)"
    return text


def _target(model_id: str, m: dict) -> str:
    if model_id not in TARGETS:
        return ""
    key, bound, text = TARGETS[model_id]
    met = m[key] <= bound if key == "test_bits_per_dim" else m[key] >= bound
    return f"{text} ({'met' if met else 'not met'})"


def _training(m: dict) -> str:
    if "training" in m:  # phases: "a-b" step ranges with their batch sizes
        parts = []
        for phase in m["training"]:
            first, last = (int(s) for s in str(phase["steps"]).split("-"))
            parts.append(f"{last - first + 1:,} x {phase['batch_size']}")
        steps = "steps " + ", then ".join(parts)
    else:
        steps = f"{m['steps']:,} steps x {m['batch_size']}"
    return f"{steps} ({m['images_seen'] / 1e6:.2f}M images, {m['epochs']:.1f} epochs), {m['wall_time_s'] / 60:.0f} min"


def _hardware(m: dict) -> str:
    hardware = m["hardware"]
    return f"{hardware}, 1 thread, shared" if hardware in ("AMD EPYC", "Intel Xeon") else hardware


def table(manifest: dict) -> str:
    rows = ["| model id | params | test bits/dim | published | target | training (images seen), wall time | hardware |",
            "| --- | ---: | --- | --- | --- | --- | --- |"]
    for model_id, m in manifest["models"].items():
        published = m.get("published", {}).get("bits_per_dim")
        rows.append(f"| `{model_id}` | {m['params']:,} | {_bits(m)} | {'' if published is None else published} "
                    f"| {_target(model_id, m)} | {_training(m)} | {_hardware(m)} |")
    return "\n".join(rows)


def put(readme: Path, begin: str, end: str, body: str) -> None:
    """Replace what lies between the markers `begin` and `end` of `readme` (both must be there) by `body`."""
    text = readme.read_text()
    start, stop = text.index(begin) + len(begin), text.index(end)
    readme.write_text(text[:start] + "\n" + body + "\n" + text[stop:])


def write(readme: Path, manifest: dict) -> None:
    """Replace the table between the markers of `readme`."""
    put(readme, BEGIN, END, table(manifest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args()
    manifest = json.loads((REPO / "pretrained" / "manifest.json").read_text())
    if args.write:
        write(REPO / "README.md", manifest)
    else:
        print(table(manifest))


if __name__ == "__main__":
    main()
