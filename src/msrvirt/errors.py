"""Errors msrvirt raises on purpose, rooted at one base class.

Each subclasses the builtin that matches its meaning, carries the offending key,
and reads "X must be Y, not Z" where that shape fits.  The CLI turns every
``MsrvirtError`` into one line on stderr and exit status 2 (a `FilterError`, a
finding, into exit status 1); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MsrvirtError(Exception):
    """Root of every error msrvirt raises on purpose."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; every subclass reads plainly.
        return str(self.args[0]) if self.args else self.__class__.__name__


class UsageError(MsrvirtError, ValueError):
    """A user-supplied value is malformed or out of range."""


class UnknownNameError(MsrvirtError, KeyError):
    """A name (MSR, CPUID feature, host, policy, design...) is not known."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        tail = f" ({hint})" if hint else ""
        super().__init__(f"{kind} must be a known name, not {name!r}{tail}")


class FileFormatError(MsrvirtError, ValueError):
    """A data file (filter, host profile, scenario, workload) is malformed."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class FilterError(MsrvirtError, ValueError):
    """KVM would reject this MSR filter; carries the errno and range KVM reports, and the
    file the filter came from when there is one."""

    def __init__(self, errno_name: str, errno: int, detail: str, range_index: int | None,
                 path: str | None = None) -> None:
        self.errno_name = errno_name
        self.errno = errno
        self.detail = detail
        self.range_index = range_index
        where = f"range {range_index}: " if range_index is not None else ""
        file = f"{path}: " if path is not None else ""
        super().__init__(f"{file}{errno_name}: {where}{detail}")

    def in_file(self, path: str) -> FilterError:
        """The same error, naming the file the filter was read from."""
        return FilterError(self.errno_name, self.errno, self.detail, self.range_index, path)
