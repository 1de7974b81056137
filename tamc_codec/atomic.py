"""Atomic file output: a reader never sees a half-written file.

Writers put the data in a temporary file in the destination's folder (same file
system, so the final ``os.replace`` is an atomic rename), flush it to disk, then
rename it over the destination. On any error the temporary file is removed and the
destination is left as it was. Stdlib only: the CLI's fast path imports this.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_path", "atomic_write_bytes"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on clean exit it replaces ``path``.

    The caller writes (and closes) the temporary file inside the ``with`` block;
    libraries that insist on opening a path themselves (PIL, numpy) work too. The
    temporary name keeps the destination's suffix, because some writers choose
    the format from it.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # The writer may have closed the file without flushing it to the disk;
        # without fsync a crash after the rename could leave an empty file.
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _match_umask(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def _match_umask(tmp: Path) -> None:
    # mkstemp creates files readable by the owner only; a plain open() would have
    # honoured the umask, and users expect outputs to look like ordinary files.
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~umask)
