"""The only bridge between the pages and `flowcore`: one module per job, all Streamlit caching and
session state of the dashboard.

Pages import these modules and lay out what they return; the chart modules (`dashboard/charts.py`,
`dashboard/score_charts.py`) only draw.

- `limits`: the per-session caps (`MAX_*`), documented for deployers;
- `catalogue`: the pretrained models (manifest, loading once per process, titles);
- `widgets`: remembered widget values and the callbacks that set them;
- `latent_paths`: straight and great-circle paths between two latent codes;
- `uploads`: an uploaded CSV of 2-D points, checked and parsed;
- `draw`: drawn strokes to 2-D points and CSV (no Streamlit);
- `sources`: Train live's data choices, the session's uploaded and drawn points;
- `toy`: 2-D flows, their densities and latent paths (stateless);
- `layers`: a 2-D flow layer by layer, with what each layer does;
- `status`: Train live's status line (no Streamlit);
- `loops`: the session's training loops, one at a time, and the step budget they share;
- `live`: the session's live run of Train live (model, trainer, training thread);
- `live_frames`: the tables Train live draws from one moment of the live run;
- `race`: the three-model race of Compare;
- `compare`: the numbers of Compare, from the manifest;
- `wording`: durations, short counts and a result's spread in words (no Streamlit);
- `mnist`: sample grids, test digits and interpolations of the MNIST models;
- `digits`: a drawn or uploaded image made an MNIST-like digit (no Streamlit);
- `score`: a digit's scores under each model, and the session's digit;
- `ood`: the Out of distribution page's numbers.

Importing any of them changes no process-wide setting: `start()` does that, once, and
`dashboard/app.py` calls it before anything else.
"""

from __future__ import annotations

import functools
import os
import sys

THREADS_ENV = "FLOWCORE_TORCH_THREADS"


@functools.cache
def start() -> None:
    """Set the process up for serving (once per process; later calls do nothing).

    Torch gets `$FLOWCORE_TORCH_THREADS` threads (default 1): each session trains a tiny model,
    and several sessions share a small CPU, so one thread each avoids oversubscription. Torch is
    not imported here: importing it takes seconds, and a page shows its first words before its
    own imports. Before torch is loaded, the thread count goes to the variables it reads when it
    loads (`OMP_NUM_THREADS`, `MKL_NUM_THREADS`); once it is, to `torch.set_num_threads`."""
    threads = str(int(os.environ.get(THREADS_ENV, "1")))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(threads))
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
