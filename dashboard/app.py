"""Normalizing flows, explained interactively: `streamlit run dashboard/app.py`.

The entry point: it makes the `dashboard` package importable from a checkout that was not
installed (Streamlit puts only this file's folder on the path), sets the process up for serving
(`services.start`), and lays out the navigation; every page is a file in `views/`. (Not `pages/`:
Streamlit treats a `pages/` folder beside the main script as a legacy multipage app, and a server
whose first visitor opens a page link directly would then run that page without this navigation.)
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from dashboard import services  # noqa: E402

services.start()

# An emoji icon becomes an inline SVG favicon; a material icon would make the browser fetch one from
# fonts.gstatic.com on every visit (and wait for it offline).
st.set_page_config(page_title="Normalizing flows, explained", page_icon="🌊", layout="wide")

st.navigation([
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/train.py", title="Train live", icon=":material/play_circle:"),
    st.Page("views/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
    st.Page("views/compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("views/sample.py", title="Sample", icon=":material/grid_view:"),
    st.Page("views/score.py", title="Score", icon=":material/draw:"),
    st.Page("views/ood.py", title="Out of distribution", icon=":material/report:"),
]).run()
