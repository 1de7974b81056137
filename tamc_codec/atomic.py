"""Atomic file output: a reader never sees a half-written file.

Writers put the data in a temporary file in the destination's folder (same file
system, so the final ``os.replace`` is an atomic rename), flush it to disk, then
rename it over the destination. On any error the temporary file is removed and the
destination is left as it was. Stdlib only: the CLI's fast path imports this.

Signals: inside :func:`signals_handled` (the CLI runs in it), SIGINT and SIGTERM raise
:class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM), so the cleanup below runs for
both; a signal arriving while a temporary file is being created, renamed or removed waits until
that step is done, so that no temporary file is ever left without an owner to remove it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["Terminated", "atomic_path", "atomic_write_bytes", "signals_deferred", "signals_handled"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt so that the same cleanup runs."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_deferring = 0
_pending: int | None = None
_owner_pid: int | None = None


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _on_signal(signum: int, frame: object) -> None:
    global _pending
    if os.getpid() != _owner_pid:
        # a forked worker (multiprocessing): Pool.terminate() ends workers with SIGTERM and expects them gone
        if signum != signal.SIGINT:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise KeyboardInterrupt
    if _deferring:
        _pending = signum
        return
    _raise_for(signum)


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise (KeyboardInterrupt, Terminated), deferred out of file steps;
    the previous handlers come back on exit. A no-op outside the main thread, where Python cannot
    install handlers.

    Python runs signal handlers in the main thread between bytecodes, whichever thread the
    signal reached, so a flag read by the handler defers it reliably (a signal mask would not:
    onnxruntime's threads do not block it).
    """
    global _owner_pid
    owner, _owner_pid = _owner_pid, os.getpid()
    try:
        previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    except ValueError:  # not the main thread
        _owner_pid = owner
        yield
        return
    try:
        yield
    finally:
        _owner_pid = owner
        for sig, handler in previous.items():
            if handler is not None:  # None: installed from C, which Python cannot put back
                signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside signals_handled, hold SIGINT and SIGTERM until the block is done (then raise)."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            _raise_for(signum)


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
    # tmp names the file exactly while it exists, so the handler below removes it whenever it runs
    tmp: Path | None = None
    try:
        with signals_deferred():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=folder)
            tmp = Path(tmp_name)
            os.close(fd)
        yield tmp
        # The writer may have closed the file without flushing it to the disk;
        # without fsync a crash after the rename could leave an empty file.
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _match_umask(tmp)
        with signals_deferred():
            os.replace(tmp, dest)
            tmp = None
    except BaseException:
        with signals_deferred():
            if tmp is not None:
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
