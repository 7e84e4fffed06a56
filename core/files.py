"""Small file-system owners: atomic writes, safe JSON reads and process liveness.

Every module that writes a file a reader may see half-way (recordings, frame cache
entries, checkpoints, configs, markers) writes it through :func:`atomic_write_bytes`:
a temporary file in the same folder, then ``os.replace``. Readers see the old file or
the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def temp_name(target: Path) -> Path:
    """A hidden sibling of ``target`` unique to this process, thread and moment."""
    return target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")


def atomic_write_bytes(path: PathLike, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one.

    ``durable`` also fsyncs the file and its folder (checkpoints: a power cut after the
    rename keeps the new file); without it the write is atomic but not flushed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(target.parent)


def atomic_write_text(path: PathLike, text: str, durable: bool = False) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def atomic_write_json(path: PathLike, value: Any, durable: bool = False) -> None:
    """:func:`atomic_write_bytes` for a JSON document (indented, so a person can read it)."""
    atomic_write_text(path, json.dumps(value, indent=2), durable=durable)


def read_json(path: PathLike) -> Any:
    """The JSON document at ``path``, or None where it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


REPO_ROOT = Path(__file__).resolve().parents[1]


def default_home() -> Path:
    """Where the app keeps its data: ``$NMNIST_DASHBOARD_HOME``, else ``<repo>/.data``."""
    env = os.environ.get("NMNIST_DASHBOARD_HOME")
    return Path(env).expanduser() if env else REPO_ROOT / ".data"


def user_path(path: PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell would.

    Raises ValueError (naming the path) where ``~user`` names no user: pathlib raises RuntimeError there, which
    callers that check folders typed by a person do not expect.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise ValueError(f"{path}: there is no user named {str(path)[1:].split('/')[0]!r} on this machine") from None
