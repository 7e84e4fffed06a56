"""``python -m core.train``: the training command line, which lives in :mod:`core.training.__main__`."""

from core.training.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
