"""Normalizing flows, explained interactively: `streamlit run dashboard/app.py`.

Only the navigation lives here; every page is a file in `views/`. (Not `pages/`: Streamlit
treats a `pages/` folder beside the main script as a legacy multipage app, and a server whose
first visitor opens a page link directly would then run that page without this navigation.)
"""

import streamlit as st

st.set_page_config(page_title="Normalizing flows, explained", page_icon=":material/waves:", layout="wide")

st.navigation([
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/train.py", title="Train live", icon=":material/play_circle:"),
    st.Page("views/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
    st.Page("views/compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("views/sample.py", title="Sample", icon=":material/grid_view:"),
]).run()
