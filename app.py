"""N-MNIST spiking-network dashboard: the table of contents (run with `streamlit run app.py`)."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="N-MNIST SNN dashboard", page_icon=":material/bolt:", layout="wide")

st.session_state["routed_by_app"] = True  # pages.common.route_through_app checks it
st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/events.py", title="Events", icon=":material/scatter_plot:"),
        st.Page("pages/transforms.py", title="Transforms", icon=":material/tune:"),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/spike_counter.py", title="Spike counter", icon=":material/bar_chart:"),
    ]
).run()
