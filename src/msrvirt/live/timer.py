"""A wall-clock limit on guest execution: SIGALRM makes a blocked KVM_RUN return EINTR.

KVM_RUN returns -EINTR when a signal with a handler is pending
(Documentation/virt/kvm/api.rst, KVM_RUN).  Python runs the handler only
between bytecodes, so a signal that lands just before the KVM_RUN system call
would be lost; two things close that window: the handler sets
kvm_run.immediate_exit (KVM_RUN then returns EINTR without entering the guest),
and the timer keeps firing every ``REARM_S`` after the limit, so a blocked
KVM_RUN is interrupted again.  Signals reach Python handlers only in the main
thread, so a limit can only be armed there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from msrvirt.errors import UsageError

REARM_S = 0.01

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class TimeLimit:
    """Arm ITIMER_REAL for ``seconds``; on expiry call ``on_expire`` once and set `expired`.

    A context manager: entering arms the timer, leaving disarms it and restores the
    previous SIGALRM handler and timer (with the time already spent taken off).
    """

    def __init__(self, seconds: float, on_expire: Callable[[], None]) -> None:
        if not seconds > 0:
            raise UsageError(f"a time limit must be a positive number of seconds, not {seconds!r}")
        self.seconds = seconds
        self.expired = False
        self._on_expire = on_expire
        self._old_handler: _Handler = None
        self._old_timer: tuple[float, float] = (0.0, 0.0)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.expired:
            self.expired = True
            self._on_expire()

    def __enter__(self) -> TimeLimit:
        if threading.current_thread() is not threading.main_thread():
            raise UsageError(
                "a guest time limit must be armed in the main thread (Python runs signal"
                " handlers only there)"
            )
        self._old_handler = signal.signal(signal.SIGALRM, self._handle)
        self._old_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds, REARM_S)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        # None means the old handler was not installed from Python: the default is the best guess.
        old = signal.SIG_DFL if self._old_handler is None else self._old_handler
        signal.signal(signal.SIGALRM, old)
        old_delay, old_interval = self._old_timer
        if old_delay:
            # Give back the enclosing timer what it had left when we took it over.
            spent = self.seconds - remaining if not self.expired else self.seconds
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - spent, REARM_S), old_interval)
