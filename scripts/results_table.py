"""Print the README's results table from pretrained/manifest.json (Markdown)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def table(manifest: dict) -> str:
    rows = ["| model | params | test bits/dim | published | target | training | hardware |",
            "| --- | ---: | --- | --- | --- | --- | --- |"]
    targets = {"nice": 4.50, "realnvp": 1.30, "glow": 1.25}
    for name in ("nice", "realnvp", "glow"):
        m = manifest["models"].get(name)
        if m is None:
            continue
        met = "met" if m["test_bits_per_dim"] <= targets[name] else "not yet"
        rows.append(
            f"| {m['title']} | {m['params']:,} | {m['test_bits_per_dim']:.3f} ± {m['test_bits_per_dim_std']:.4f} "
            f"| {m['published']['bits_per_dim']:.2f} | <= {targets[name]:.2f} ({met}) "
            f"| {m['steps']:,} steps x {m['batch_size']} ({m['epochs']:.1f} epochs), {m['wall_time_s'] / 60:.0f} min "
            f"| {m['hardware']}, 1 thread, shared |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(json.loads((REPO / "pretrained" / "manifest.json").read_text())))
