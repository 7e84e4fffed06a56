"""`import core` (and every core module) must never import Streamlit."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import core


def test_core_never_imports_streamlit() -> None:
    modules = [f"core.{m.name}" for m in pkgutil.iter_modules(core.__path__)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__('pathlib').Path(core.__file__).parents[1]))
