"""The Streamlit dashboard (`streamlit run dashboard/app.py`): pages in `views/`, the bridge to flowcore
in `services/`."""
