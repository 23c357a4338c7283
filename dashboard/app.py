"""Normalizing flows, explained interactively: `streamlit run dashboard/app.py`.

Only the navigation lives here; every page is a file in `views/`. (Not `pages/`: Streamlit
treats a `pages/` folder beside the main script as a legacy multipage app, and a server whose
first visitor opens a page link directly would then run that page without this navigation.)
"""

import streamlit as st

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
