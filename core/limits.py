"""What one request may cost: the budgets every page, loader and job checks before it works.

The app is a server anyone with a link can drive, so work whose size comes from
outside (a transform's parameters, an event file, a training batch) is estimated
first and refused past these budgets, naming the field and the estimate. Defaults
fit the 2-core, 24 GB machine with room for several users; each can be changed with
an environment variable ``NMNIST_LIMIT_<FIELD>`` in bytes (e.g.
``NMNIST_LIMIT_SAMPLE_FRAMES_BYTES=1073741824``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

MIB = 2**20
GIB = 2**30
TIB = 2**40
PIB = 2**50


@dataclass(frozen=True)
class Limits:
    """Byte budgets of one request (see the module docstring for how to change them)."""

    sample_frames_bytes: int = 256 * MIB  # one sample's frames on the Transforms page
    event_file_bytes: int = 16 * MIB  # one event file (N-MNIST's are about 20 KB; 16 MiB is 3.3 M events)
    training_batch_bytes: int = 6 * GIB  # one training batch's frames with the network's activations
    page_cache_bytes: int = 512 * MIB  # derived arrays and figures the pages keep, all sessions together
    upload_image_bytes: int = 8 * MIB  # one picture uploaded on the Draw page (a phone photo is 2 to 6 MB)


class LimitExceeded(ValueError):
    """A request whose estimated size is over its budget: names the field, the estimate and the limit."""

    def __init__(self, field: str, needed_bytes: float, limit_bytes: int, what: str) -> None:
        self.field = field
        self.needed_bytes = needed_bytes
        self.limit_bytes = limit_bytes
        super().__init__(f"{what} needs {format_bytes(needed_bytes)}; the limit is {format_bytes(limit_bytes)}")


def format_bytes(n: float) -> str:
    """Bytes for a person: 1.4 GB, 256 MB, 12 kB (binary units, written as people say them); an estimate beyond
    petabytes (a hostile size) in powers of ten, never a 30-digit number."""
    if not math.isfinite(n):
        return "an unbounded number of bytes"
    if n >= 1000 * PIB:
        return f"{n / PIB:.1e} PB"
    for unit, size in (("PB", PIB), ("TB", TIB), ("GB", GIB), ("MB", MIB), ("kB", 1024)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


def limits() -> Limits:
    """The budgets in force: the defaults, overridden by ``NMNIST_LIMIT_<FIELD>`` environment variables."""
    changes = {}
    for field in dataclasses.fields(Limits):
        raw = os.environ.get(f"NMNIST_LIMIT_{field.name.upper()}")
        if raw:
            try:
                changes[field.name] = max(0, int(float(raw)))
            except (ValueError, OverflowError):  # "lots", "inf"
                pass  # a malformed override keeps the default rather than stopping the server
    return dataclasses.replace(Limits(), **changes)


def check_bytes(field: str, needed_bytes: float, limit_bytes: int, what: str) -> None:
    """Raise :class:`LimitExceeded` where ``needed_bytes`` is over ``limit_bytes``."""
    if not needed_bytes <= limit_bytes:  # also refuses NaN
        raise LimitExceeded(field, needed_bytes, limit_bytes, what)
