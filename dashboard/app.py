"""Normalizing flows, explained interactively: `streamlit run dashboard/app.py`.

Only the navigation lives here; every page is a file in `pages/`.
"""

import streamlit as st

st.set_page_config(page_title="Normalizing flows, explained", page_icon=":material/waves:", layout="wide")

st.navigation([
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train live", icon=":material/play_circle:"),
    st.Page("pages/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("pages/sample.py", title="Sample", icon=":material/grid_view:"),
]).run()
