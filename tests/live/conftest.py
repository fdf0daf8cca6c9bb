"""Fixtures for the live tests: a /dev/kvm handle that skips (with the reason) where KVM is absent.

Set MSRVIRT_REQUIRE_KVM=1 (CI on a KVM host) to turn that skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from msrvirt.live.errors import KvmError
from msrvirt.live.kvm import Kvm


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def kvm() -> Iterator[Kvm]:
    """An open /dev/kvm; the test is skipped, saying why, when it cannot be opened."""
    try:
        handle = Kvm()
    except KvmError as err:
        if os.environ.get("MSRVIRT_REQUIRE_KVM"):
            pytest.fail(f"MSRVIRT_REQUIRE_KVM is set but /dev/kvm is unusable: {err}")
        pytest.skip(f"/dev/kvm is not usable here: {err}")
    with handle:
        yield handle


@pytest.fixture(autouse=True)
def no_fd_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every live test that uses KVM ends with as many open fds as it started with."""
    if "kvm" not in request.keywords:
        yield
        return
    # Autouse fixtures are set up first and torn down last: ``kvm`` is closed by the check.
    before = open_fds()
    yield
    after = open_fds()
    assert after == before, f"open fds went from {before} to {after}"
