"""The per-session caps of the dashboard, documented for deployers (README, "Limits per browser session").

The controls of the pages stop at these values, and an upload or a session over one of them gets a
sentence saying which. Read them as `limits.NAME` (not `from limits import NAME`), so that a test
or a deployer that changes one changes it everywhere.
"""

MAX_POINTS = 5000  # points in one uploaded (or drawn) 2-D data set
MIN_POINTS = 20  # fewer points than this cannot be trained on meaningfully
MAX_STEPS_UNATTENDED = 20_000  # optimisation steps a session trains after its last click (Play, Step, Reset, race)
MAX_UPLOAD_BYTES = 1_000_000  # size of one uploaded CSV file (also .streamlit/config.toml)
MAX_TRAINING_LOOPS = 1  # training loops running at once per session (live page or race)
MAX_GRID_SIDE = 10  # sample grids are at most 10 x 10 images
MAX_INTERP_STEPS = 16  # images in one interpolation strip
