"""Private temporary folders that never outlive their use.

Uploads and zip contents are unpacked into a folder from :func:`private_tempdir`, a context manager
that removes it on exit, also when reading fails. A process killed outright (``kill -9``, out of
memory) cannot clean up, so each folder's name carries the host and the process ID
(``workbench_io_<host>_<pid>_<random>``), and the first temporary folder a process makes removes
the folders of this host whose process no longer exists.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile

PREFIX = "workbench_io_"
_swept: set[str] = set()


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return True
    return True


def sweep_stale_tempdirs(root: str | None = None) -> list[str]:
    """Remove this host's workbench temporary folders (under ``root``, default the system temp
    folder) whose process has ended; returns the removed paths. Only folders owned by this user
    are touched, and never through a symbolic link."""
    root = root or tempfile.gettempdir()
    pattern = re.compile(re.escape(PREFIX + _host_tag()) + r"_(\d+)_")
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def private_tempdir() -> tempfile.TemporaryDirectory:
    """A new temporary folder (mode 0700) removed when its context ends; the first call of a
    process (per temporary root) also sweeps the folders left by killed processes."""
    root = tempfile.gettempdir()
    if root not in _swept:
        _swept.add(root)
        sweep_stale_tempdirs(root)
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{_host_tag()}_{os.getpid()}_")
