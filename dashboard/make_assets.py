"""Write the small 2-D flow the dashboard ships: `python -m dashboard.make_assets` (from the repository root).

Home and Interpolate show a RealNVP trained on two moons. Shipping it (about 70 KB) means
the first visitor does not wait for it to train; without the file it is trained at start-up.
"""

from __future__ import annotations

import sys

from dashboard.services import toy
from flowcore.checkpoint import save

STEPS = 3000  # longer than the start-up fallback can afford, so the picture is crisp


def main() -> None:
    flow = toy.train_default_flow("moons", steps=STEPS)
    path = save(flow, toy.DEFAULT_ASSET, **flow.metadata)
    print(f"wrote {path}: {toy.describe(flow)}")


if __name__ == "__main__":
    sys.exit(main())
