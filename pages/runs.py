"""What the pages share about training runs: the server's one training registry and run store, the run list,
the evaluations in progress, and the run picker of the pages that show a network (``?run=``).

Server-wide resources live here, in one module, so that every page gets the same cached object: one training at a
time and one evaluation at a time, whichever page starts it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core import inference
from core.inference import UNTRAINED, UNTRAINED_PARAM, RunChoice
from core.runs import RunStore
from core.text import escape_markdown
from core.training import JobRegistry

RUN_PARAM = "run"  # the query parameter naming the network shown


# ------------------------------------------------------------------ server-wide resources


@st.cache_resource(show_spinner=False)
def registry(runs_root: str) -> JobRegistry:
    """One registry per server (all sessions, all pages): it refuses a second training while one runs."""
    return JobRegistry(RunStore(runs_root))


def run_store(runs_root: str) -> RunStore:
    """The server's store of ``runs_root`` (the registry's: it remembers which metrics files it has checked)."""
    return registry(runs_root).store


@st.cache_data(show_spinner=False, ttl=3, max_entries=4)
def run_choices(runs_root: str) -> list[RunChoice]:
    """Every run folder, damaged ones with their problem (read again after a few seconds: runs end, new ones start)."""
    return inference.run_choices(run_store(runs_root))


@st.cache_resource(show_spinner=False)
def evaluation_jobs() -> dict[str, Any]:
    """The evaluation in progress on this server (one at a time, like training): its run, its job, what it tests."""
    return {}


@st.cache_resource(show_spinner=False)
def load_failures() -> dict[tuple[str, str, float], str]:
    """Checkpoints that did not load, per (runs root, run, checkpoint time), with the reason; for every session."""
    return {}


# ------------------------------------------------------------------ the run list and the picker


def listed_runs(store: RunStore) -> list[RunChoice]:
    """The runs of ``store``, those whose checkpoint did not load marked damaged."""
    failures = load_failures()
    runs = []
    for run in run_choices(str(store.root)):
        problem = failures.get((str(store.root), run.run_id, run.checkpoint_stamp))
        runs.append(run.damaged(problem) if problem is not None and run.usable else run)
    return runs


def url_choice(raw: str | None, runs: dict[str, RunChoice]) -> tuple[str | None, str | None]:
    """The network a link names (None: the default) and a notice (plain text) where it cannot be shown."""
    if not raw:
        return None, None
    if raw == UNTRAINED_PARAM:
        return UNTRAINED, None
    run = runs.get(raw)
    if run is not None and run.usable:
        return raw, None
    name = raw if len(raw) <= 80 else raw[:80] + "…"  # the notice's own words must survive a huge parameter
    if run is not None:
        return None, f"The link names run {name}, which cannot be shown: {run.problem or 'it has no checkpoint yet'}."
    return None, f"The link names run {name}, but there is no run of that name here."


def damaged_runs_ui(runs: list[RunChoice]) -> None:
    """The damaged run folders, folded, each with its problem."""
    damaged = [r for r in runs if r.problem is not None]
    if damaged:
        with st.expander(f"{len(damaged)} damaged run folder{'s' if len(damaged) > 1 else ''}, left out of the list"):
            for r in damaged:
                st.markdown(f"- **{escape_markdown(r.run_id)}**: {escape_markdown(r.problem)}")


def run_ui(store: RunStore, key: str, untrained: str) -> RunChoice | None:
    """The network to show (None: the untrained one), from the picker, else the link, else the best finished run.

    Says which run is shown and why, what it trained on, and which run folders are damaged; keeps the choice in
    the URL (``?run=``). ``key`` prefixes the page's session-state keys (the picker is ``<key>_run``);
    ``untrained`` is a sentence on what the untrained network shows on this page.
    """
    choice, notice, picker = f"{key}_choice", f"{key}_notice", f"{key}_run"
    runs = listed_runs(store)
    by_id = {run.run_id: run for run in runs}
    options = [run.run_id for run in runs if run.usable] + [UNTRAINED]
    default, why = inference.default_run(runs)
    if choice not in st.session_state:  # the session's first view: the link decides
        st.session_state[choice], st.session_state[notice] = url_choice(st.query_params.get(RUN_PARAM), by_id)
    chosen = st.session_state[choice]
    if chosen is not None and chosen not in options:  # deleted, or its checkpoint did not load
        gone = by_id.get(chosen)
        reason = gone.problem if gone is not None and gone.problem else "its folder or checkpoint is gone"
        st.session_state[notice] = f"Run {chosen} cannot be shown: {reason}."
        st.session_state[choice] = chosen = None
    shown = chosen or (default.run_id if default is not None else UNTRAINED)
    st.session_state[picker] = shown

    def picked() -> None:
        st.session_state[choice] = st.session_state[picker]
        st.session_state[notice] = None

    st.selectbox("Network", options, key=picker, on_change=picked,
                 format_func=lambda r: by_id[r].label() if r in by_id else r)
    value = UNTRAINED_PARAM if shown == UNTRAINED else shown
    if st.query_params.get(RUN_PARAM) != value:
        st.query_params[RUN_PARAM] = value

    if st.session_state.get(notice):
        st.warning(escape_markdown(st.session_state[notice] + " Showing the default network instead.", limit=600))
    run = by_id.get(shown)
    if run is None:
        if default is None:
            st.info(f"No trained network yet: train one on the **Training** page. Meanwhile this page shows an "
                    f"untrained network (seeded random weights). {untrained}")
        else:
            st.caption(escape_markdown(f"Shown: an untrained network (seeded random weights), as chosen. {untrained} "
                                       f"By default this page shows {default.run_id}, {why}."))
    else:
        if default is not None and shown == default.run_id:
            line = f"Shown: run {shown}, {why}."
        else:
            line = f"Shown: run {shown}, as chosen" + (f"; by default this page shows {default.run_id}, {why}." if
                                                      default is not None else ".")
        if run.trained_on is not None:
            line += f" Trained on {run.trained_on.describe()}."
        st.caption(escape_markdown(line, limit=600))
    damaged_runs_ui(runs)
    return run
