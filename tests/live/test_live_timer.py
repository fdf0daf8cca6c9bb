"""TimeLimit: SIGALRM arming, expiry, restoring what was there before (no KVM needed)."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import pytest

from msrvirt.errors import UsageError
from msrvirt.live.timer import TimeLimit


def test_expiry_calls_back_once_and_interrupts_a_blocking_call() -> None:
    calls: list[float] = []
    with TimeLimit(0.05, lambda: calls.append(time.monotonic())) as limit:
        started = time.monotonic()
        while not limit.expired and time.monotonic() - started < 2:
            time.sleep(0.01)  # a blocked system call in miniature: woken by SIGALRM
        time.sleep(0.05)  # the timer keeps re-firing; the callback must not run again
    assert limit.expired and len(calls) == 1
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_previous_handler_and_timer_come_back() -> None:
    fired: list[int] = []

    def outer(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        with TimeLimit(1.0, lambda: None):
            assert signal.getsignal(signal.SIGALRM) is not outer
        assert signal.getsignal(signal.SIGALRM) is outer
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < remaining <= 5.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert fired == []


def test_a_limit_is_positive() -> None:
    with pytest.raises(UsageError, match="positive number of seconds"):
        TimeLimit(0, lambda: None)


def test_a_limit_cannot_be_armed_outside_the_main_thread() -> None:
    caught: list[BaseException] = []

    def arm() -> None:
        try:
            with TimeLimit(1.0, lambda: None):
                pass
        except UsageError as err:
            caught.append(err)

    worker = threading.Thread(target=arm)
    worker.start()
    worker.join()
    assert len(caught) == 1 and "main thread" in str(caught[0])
