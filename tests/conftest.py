"""Shared fixtures (the real sample data, where present), the ``--reverse`` option; helpers live in helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same property-test examples every time (a failure there is reproducible);
# local runs keep drawing new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]

# The real-browser harness (fixtures server, fresh_server, home, browser, page): tests/browser.py.
pytest_plugins = ["browser"]
BROWSER_FIXTURES = frozenset({"server", "fresh_server", "browser", "page"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse", action="store_true", help="run the tests in reverse order: no test may need an earlier one"
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the markers added here count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the browser harness is a browser test, marked or not; ``--reverse`` turns the order round."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        parametrized = set(callspec.params) if callspec is not None else set()  # e.g. a `page` that is a page file
        if BROWSER_FIXTURES.intersection(set(getattr(item, "fixturenames", ())) - parametrized):
            item.add_marker(pytest.mark.browser)
    if config.getoption("--reverse"):
        items.reverse()


def _shared_data() -> Path | None:
    value = os.environ.get("NMNIST_SHARED_DATA")
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """One torch thread: the snnTorch oracle runs thousands of tiny ops, ~15x slower with two on a busy 2-core box."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real reference data (``nmnist-sample/``, ``mnist-sample/``); skips if absent."""
    path = _shared_data()
    if path is None:
        pytest.skip("real sample data not found: set NMNIST_SHARED_DATA to ../shared/data")
    return path


@pytest.fixture(scope="session")
def real_nmnist_root(shared_data: Path) -> Path:
    """ROOT of the real N-MNIST sample, holding ``NMNIST/Train`` and ``NMNIST/Test``."""
    root = shared_data / "nmnist-sample"
    if not (root / "NMNIST").is_dir():
        pytest.skip(f"no NMNIST folder in {root}")
    return root


@pytest.fixture(scope="session")
def real_recordings(real_nmnist_root: Path) -> list[Path]:
    """Every real ``.bin`` recording of the sample, sorted."""
    return sorted(real_nmnist_root.glob("NMNIST/*/*/*.bin"))
