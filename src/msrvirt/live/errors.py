"""Errors of the live layer: one for every failed /dev/kvm call, one family for guests.

`KvmError` is the one error a kernel call raises (open, ioctl, mmap, a missing
capability), carrying the operation's name and the errno, the way rust-vmm's
kvm-ioctls returns ``errno::Error``.  `GuestError` and its subclasses say that
the guest did something the probe did not expect (ran past its time limit, took
an exception it does not handle, exited in a way the caller cannot answer).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING

from msrvirt.errors import MsrvirtError

if TYPE_CHECKING:
    from msrvirt.live.exits import Exit


def errno_name(number: int) -> str:
    """The symbolic name of ``number`` (``EINVAL``), or ``errno N`` when it has none."""
    return _errno.errorcode.get(number, f"errno {number}")


class KvmError(MsrvirtError, OSError):
    """A /dev/kvm operation failed; ``op`` names it (an ioctl such as KVM_RUN) and ``errno`` why.

    Reads "KVM_X86_SET_MSR_FILTER failed: EINVAL (Invalid argument)".  ``detail``,
    when given, is appended after a colon.
    """

    op: str
    detail: str

    def __init__(self, op: str, number: int, detail: str = "") -> None:
        OSError.__init__(self, number, os.strerror(number))
        self.op = op
        self.number = number  # = self.errno, typed int (OSError's errno is int | None)
        self.detail = detail

    @property
    def errno_name(self) -> str:
        return errno_name(self.number)

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.op} failed: {self.errno_name} ({self.strerror}){tail}"

    def __reduce__(self) -> tuple[type[KvmError], tuple[str, int, str]]:
        # OSError pickles as OSError(*args); keep the op and detail across processes.
        return (type(self), (self.op, self.number, self.detail))


def missing_capability(op: str, cap_name: str, cap: int) -> KvmError:
    """The error for ``op`` on a kernel without capability ``cap`` (KVM_CHECK_EXTENSION said 0)."""
    return KvmError(
        op, _errno.EOPNOTSUPP,
        f"needs {cap_name} ({cap}), which KVM_CHECK_EXTENSION reports unsupported",
    )


class GuestError(MsrvirtError, RuntimeError):
    """The guest did not behave as the caller's program says it must."""


class GuestTimeout(GuestError):
    """KVM_RUN did not come back within the time limit; the guest was stopped (EINTR)."""

    def __init__(self, time_limit_s: float, detail: str = "") -> None:
        self.time_limit_s = time_limit_s
        tail = f" ({detail})" if detail else ""
        super().__init__(
            f"the guest must stop within {time_limit_s:g} s, but was still running{tail}"
        )


class UnexpectedExit(GuestError):
    """KVM_RUN returned an exit the caller has no answer for; carries the typed exit."""

    def __init__(self, exit_: Exit, detail: str) -> None:
        self.exit = exit_
        super().__init__(f"unexpected exit {exit_!r}: {detail}")


class GuestFault(GuestError):
    """The probe guest took an exception it does not handle (vector, and where: CS:IP)."""

    def __init__(self, vector: int, cs: int, ip: int) -> None:
        self.vector = vector
        self.cs = cs
        self.ip = ip
        what = f"vector {vector}" if vector < 32 else "an interrupt vector >= 32"
        super().__init__(
            f"the probe guest must only fault with #GP on RDMSR/WRMSR, not {what} at"
            f" {cs:04x}:{ip:04x}"
        )
