"""The one atomic writer: a file is written beside its target, then moved over it (``os.replace``), so that
``kill -9`` at any moment leaves either the old or the new file, never half of one."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path`` to write; when the block ends without an error it replaces
    ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before it replaces the old file."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
