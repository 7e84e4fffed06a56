"""`import core` (and every core module, subpackages included) must never import Streamlit."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import core


@pytest.mark.slow
def test_core_never_imports_streamlit() -> None:
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="core.")]
    assert "core.events" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "assert not bad, bad\n"
    )
    # A fresh interpreter: the test process itself has long imported Streamlit (the page tests).
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(core.__file__).parents[1])
