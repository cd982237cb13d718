"""The platform's files under ``STATE_DIR``: the shutdown snapshot and the pid file.

Written atomically (a reader sees the old file or the new one, never half of one);
the pid file lets ``shutdown_platform`` on the same machine find and signal the
running ``runplatform``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

SNAPSHOT_FILE = "snapshot.json"
PID_FILE = "runplatform.pid"


def state_dir() -> Path:
    return Path(settings.STATE_DIR)


def snapshot_path() -> Path:
    return state_dir() / SNAPSHOT_FILE


def pid_path() -> Path:
    return state_dir() / PID_FILE


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to ``path``, flush it to disk, then rename over ``path``.

    A reader sees the old file or the new one, never half of one, even if the
    process dies while writing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the pid file of runplatform -------------------------------------------------------------

def pid_file_write(started_at: datetime) -> Path:
    path = pid_path()
    write_json_atomic(path, {"pid": os.getpid(), "host": socket.gethostname(),
                             "started_at": started_at.isoformat()})
    return path


def pid_file_remove() -> None:
    """Remove the pid file if it is this process's."""
    data = read_json(pid_path())
    if data and data.get("pid") == os.getpid() and data.get("host") == socket.gethostname():
        pid_path().unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running ``runplatform`` process of this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():  # Linux: make sure the pid was not reused by another program
        try:
            return b"runplatform" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def local_platform_pid() -> int | None:
    """The pid of a live ``runplatform`` of this machine, from ``STATE_DIR``'s pid file."""
    data = read_json(pid_path())
    if not data or data.get("host") != socket.gethostname():
        return None
    pid = data.get("pid")
    return pid if isinstance(pid, int) and pid_alive(pid) else None


def signal_local_platform() -> int | None:
    """SIGTERM the local ``runplatform`` (its graceful stop); its pid, or ``None``."""
    pid = local_platform_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    return pid


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)
