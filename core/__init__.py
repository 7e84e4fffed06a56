"""Core library of the N-MNIST spiking-network dashboard: data, transforms, model, training.

Plain Python; never imports Streamlit (tests/test_core_imports.py proves it).
"""

from __future__ import annotations

__version__ = "0.1.0"
