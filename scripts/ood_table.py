"""The README's AUROC table, from pretrained/ood_stats.npz: `python -m scripts.ood_table [--write]`.

Prints the Markdown table of the Out of distribution page's detectors (AUROC of each model's own
test set against every other set, computed as the page does), or with `--write` puts it into
README.md between the two `ood-table` markers. Run it after `python -m scripts.ood`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- ood-table:begin (python -m scripts.ood_table --write) -->", "<!-- ood-table:end -->"


def table(stats) -> str:
    """One row per model and detector, one column per set; "—" for the model's own test set, "n/a"
    where a detector does not apply, bold below 0.5 (the detector prefers the outliers). The
    Fashion-MNIST model first: the paradox the page is about."""
    from dashboard.services import ood

    models = sorted(stats.models, key=lambda m: stats.meta["models"][m]["dataset"] != "fashion-mnist")
    rows = ["| model | detector | " + " | ".join(stats.sets) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in stats.sets) + " |"]
    for model in models:
        aurocs = ood.auroc_table(stats, model)
        for detector, row in aurocs.iterrows():
            cells = []
            for key in stats.sets:
                value = row.get(key, math.nan) if key != stats.own(model) else None
                cells.append("—" if value is None else "n/a" if math.isnan(value)
                             else f"**{value:.3f}**" if value < 0.5 else f"{value:.3f}")
            rows.append(f"| {ood.title(stats, model)} | {detector} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def shipped(path: Path = REPO / "pretrained" / "ood_stats.npz"):
    """The statistics file the app ships, as the page's `Stats` (read directly, without the page's cache)."""
    from dashboard.services.ood import Stats
    from flowcore.ood import read_statistics

    if not path.is_file():
        raise SystemExit(f"{path} does not exist: make it with python -m scripts.ood --data-dir <MNIST folder>")
    return Stats(*read_statistics(path), version=str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args()
    from streamlit.logger import set_log_level

    set_log_level("error")  # before the page's caches warn that no app is running: true, and harmless here
    if args.write:
        from scripts.results_table import put

        put(REPO / "README.md", BEGIN, END, table(shipped()))
    else:
        print(table(shipped()))


if __name__ == "__main__":
    main()
