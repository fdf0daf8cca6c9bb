"""The one writer of the files msrvirt produces (bitmap pages, plots, reports, JSON).

Every verb's output option goes through `write_output`, so they all treat a path the
same way (the tool runs as root, where a wrong rename replaces a device node):

- a regular file, or a new one, is replaced atomically: written to a temporary file
  in the same directory and renamed over it, keeping an existing file's mode and
  owner; nothing is left behind if anything fails or the run is interrupted;
- a symlink is followed (its target is written by the rules here), never replaced;
- a character device or a FIFO is opened and written as a stream, never replaced;
- ``-``, or a path naming one of this process's file descriptors (``/dev/stdout``,
  ``/proc/self/fd/N``), writes to that descriptor;
- a directory, a block device or a socket is refused with one line (UsageError);
- a missing directory is created only when the caller says so (``parents``).

`check_output` runs the same checks without writing, for long verbs that should fail
before their work rather than after it.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import TextIO

from msrvirt.errors import UsageError

STDOUT = "-"
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_FD_DIR = re.compile(r"/proc/(self|\d+)(/task/\d+)?/fd")

# Where `-` writes: the process's standard output, even while a verb's own report is sent
# to standard error because its file goes to standard output (`reserved_stdout`).
_stdout: ContextVar[TextIO | None] = ContextVar("msrvirt_stdout", default=None)


class Kind(Enum):
    """What a path turns out to be, and so how it is written."""

    FILE = "regular file (replaced atomically)"
    NEW = "new file"
    STREAM = "character device or FIFO (written as a stream)"
    FD = "file descriptor of this process"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A resolved output path: its kind, the real path to write and, for FD, the descriptor."""

    kind: Kind
    path: str
    fd: int = -1


def _refuse(path: str, why: str) -> UsageError:
    return UsageError(f"cannot write {path}: {why}")


def resolve(path: str, *, parents: bool = False) -> Target:
    """Follow ``path``'s symlinks and say how it would be written; UsageError if it would not."""
    if path == STDOUT:
        return Target(kind=Kind.FD, path=path, fd=1)
    if not path:
        raise _refuse("''", "the path is empty")
    p = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        parent, name = os.path.split(p)
        parent = os.path.realpath(parent)
        p = os.path.join(parent, name)
        fd_dir = _FD_DIR.fullmatch(parent)
        if fd_dir and name.isdigit():
            if fd_dir[1] not in ("self", str(os.getpid())):
                raise _refuse(path, "it is another process's file descriptor")
            return Target(kind=Kind.FD, path=p, fd=int(name))
        try:
            info = os.lstat(p)
        except FileNotFoundError:
            if not parents and not os.path.isdir(parent):
                raise _refuse(path, f"directory {parent} does not exist") from None
            return Target(kind=Kind.NEW, path=p)
        except OSError as err:
            raise _refuse(path, str(err.strerror)) from None
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            p = os.path.join(parent, os.readlink(p))
            continue
        if stat.S_ISREG(mode):
            return Target(kind=Kind.FILE, path=p)
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            return Target(kind=Kind.STREAM, path=p)
        what = ("a directory" if stat.S_ISDIR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket")
        raise _refuse(path, f"it is {what}; msrvirt writes regular files, character devices,"
                      " FIFOs and - (standard output)")
    raise _refuse(path, "too many levels of symbolic links")


def check_output(path: str, *, parents: bool = False) -> None:
    """Fail now, with one line, if `write_output` would refuse ``path`` (writes nothing)."""
    target = resolve(path, parents=parents)
    if target.kind not in (Kind.FILE, Kind.NEW):
        return
    directory = os.path.dirname(target.path)
    while parents and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    if not os.access(directory, os.W_OK):
        raise _refuse(path, f"directory {directory} is not writable")


def write_output(path: str, data: bytes, *, parents: bool = False) -> None:
    """Write ``data`` to ``path`` by the rules of this module; UsageError (one line) on failure."""
    target = resolve(path, parents=parents)
    try:
        if target.kind is Kind.FD:
            _write_fd(target.fd, data)
        elif target.kind is Kind.STREAM:
            _write_stream(target.path, data)
        else:
            _replace(target, data, parents=parents)
    except BrokenPipeError:
        discard_stdout()  # the reader has gone: end quietly, as for any output to a pipe
    except OSError as err:
        raise _refuse(path, str(err.strerror or err)) from None


def _write_fd(fd: int, data: bytes) -> None:
    out = _stdout.get() or sys.stdout
    if fd == 1:
        out.flush()  # what was printed before comes first
        out.buffer.write(data)
        out.buffer.flush()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_stream(path: str, data: bytes) -> None:
    # O_NOFOLLOW: `resolve` followed the links; a link appearing here now is refused (ELOOP).
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise OSError(0, "it changed while being opened")
        _write_all(fd, data)
    finally:
        os.close(fd)


def _replace(target: Target, data: bytes, *, parents: bool) -> None:
    directory, name = os.path.split(target.path)
    if parents:
        os.makedirs(directory, exist_ok=True)
    import tempfile  # only where a file is written: keeps the start-up of other verbs quick

    old = os.stat(target.path) if target.kind is Kind.FILE else None
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if old is None:
            # mkstemp creates the file 0600; give it the mode any new file gets here.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        else:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            with suppress(PermissionError):  # not root: the file becomes ours, as on any rewrite
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, target.path)
    except BaseException:
        os.unlink(tmp)
        raise


def discard_stdout() -> None:
    """Point standard output at /dev/null: its reader has gone (EPIPE), and what is still
    buffered or printed later must not fail again (at exit, as an ignored exception)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


class HeldStdout:
    """Standard output while a verb runs: what it prints is held, and written when the verb
    has returned.

    So Ctrl-C or an error leaves no partial output, and a reader that has gone away
    (`msrvirt ... | head -1`, EPIPE) ends the writing quietly: the descriptor is pointed at
    /dev/null (`discard_stdout`) instead of a BrokenPipeError, now or at exit.  Everything
    but writing (isatty, fileno, encoding, buffer...) is the real stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.held: list[str] = []

    def write(self, text: str) -> int:
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to do until `release`."""

    def release(self) -> None:
        text, self.held = "".join(self.held), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            discard_stdout()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


@contextmanager
def held_stdout() -> Iterator[None]:
    """Run the body with `HeldStdout` as sys.stdout; write what it printed if the body ended
    normally or by SystemExit (argparse's --help), drop it on any other exception."""
    stream = sys.stdout
    held = HeldStdout(stream)
    sys.stdout = held  # duck-typed: writing held, the rest delegated
    try:
        yield
    except SystemExit:
        sys.stdout = stream
        held.release()
        raise
    finally:
        sys.stdout = stream
    held.release()


@contextmanager
def reserved_stdout() -> Iterator[None]:
    """Keep standard output for `write_output(\"-\")`; everything else printed meanwhile goes
    to standard error (so `--out -` gives a clean stream, with the report beside it)."""
    token = _stdout.set(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _stdout.reset(token)
