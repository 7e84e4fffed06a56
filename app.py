"""N-MNIST spiking-network dashboard: the table of contents (run with `streamlit run app.py`)."""

from __future__ import annotations

import streamlit as st

# ⚡ (U+26A1) written as an XML character reference: the string stays ASCII (see set_page_config below)
PAGE_ICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><text y=".9em" font-size="90">&#x26A1;</text></svg>'

# Streamlit runs this file as __main__. Worker processes started by forkserver or spawn (the saccade
# simulator's, generating the default data set) import the main module again as __mp_main__: the guard
# keeps them from running the app (and filling the log with session-state and ScriptRunContext warnings).
if __name__ == "__main__":
    # The emoji drawn by the browser, in an inline SVG: a :material/...: page icon makes the browser fetch it from
    # fonts.gstatic.com, and any non-ASCII page_icon makes Streamlit compile its 5,000-emoji regex (0.3 to 1 s of a
    # cold server's first page).
    st.set_page_config(page_title="N-MNIST SNN dashboard", page_icon=PAGE_ICON, layout="wide")

    st.session_state["routed_by_app"] = True  # pages.common.route_through_app checks it
    st.navigation(
        [
            st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
            st.Page("pages/events.py", title="Events", icon=":material/scatter_plot:"),
            st.Page("pages/transforms.py", title="Transforms", icon=":material/tune:"),
            st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
            st.Page("pages/spike_counter.py", title="Spike counter", icon=":material/bar_chart:"),
            st.Page("pages/layers.py", title="Layer view", icon=":material/layers:"),
            st.Page("pages/mistakes.py", title="Mistakes", icon=":material/rule:"),
            st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
        ]
    ).run()
