"""Error paths that need no KVM: typed errors carrying the ioctl name and errno."""

from __future__ import annotations

import errno
import os
import pickle

import pytest

from msrvirt.arch.kvm import Access
from msrvirt.errors import MsrvirtError, UsageError
from msrvirt.live.errors import (
    GuestFault,
    GuestTimeout,
    KvmError,
    UnexpectedExit,
    missing_capability,
)
from msrvirt.live.exits import MsrAnswer, Shutdown
from msrvirt.live.kvm import GuestMemory, Kvm, Vcpu, Vm, ioctl
from msrvirt.live.probe import MAX_OPS_PER_RUN, Probe, _batches
from msrvirt.live.uapi import Ioctl
from msrvirt.policy.decide import Initiator, MsrAccess, check_access


def test_an_invalid_fd_gives_kvm_error_with_the_ioctl_name_and_errno() -> None:
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)  # now a descriptor number nothing has open
    with pytest.raises(KvmError) as caught:
        ioctl(fd, Ioctl.KVM_RUN)
    err = caught.value
    assert (err.op, err.errno, err.errno_name) == ("KVM_RUN", errno.EBADF, "EBADF")
    assert str(err) == "KVM_RUN failed: EBADF (Bad file descriptor)"


def test_a_closed_handle_fd_gives_ebadf_naming_the_ioctl() -> None:
    with pytest.raises(KvmError) as caught:
        ioctl(-1, Ioctl.KVM_GET_REGS)
    assert (caught.value.op, caught.value.errno) == ("KVM_GET_REGS", errno.EBADF)
    assert "the handle is closed" in str(caught.value)


def test_kvm_error_is_both_an_msrvirt_error_and_an_os_error() -> None:
    err = KvmError("KVM_X86_SET_MSR_FILTER", errno.EINVAL)
    assert isinstance(err, MsrvirtError) and isinstance(err, OSError)
    assert str(err) == "KVM_X86_SET_MSR_FILTER failed: EINVAL (Invalid argument)"
    assert err.strerror == "Invalid argument"


def test_kvm_error_survives_pickling_with_its_op_and_detail() -> None:
    err = KvmError("KVM_GET_MSRS", errno.E2BIG, "256 entries")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.op, back.errno, back.detail, str(back)) == (
        KvmError, "KVM_GET_MSRS", errno.E2BIG, "256 entries", str(err))


def test_a_missing_device_gives_a_typed_error_naming_the_path() -> None:
    with pytest.raises(KvmError) as caught:
        Kvm("/nonexistent/kvm")
    assert caught.value.op == "open /nonexistent/kvm"
    assert caught.value.errno == errno.ENOENT
    assert "is the kvm module loaded?" in str(caught.value)


def test_a_device_that_is_not_kvm_fails_its_api_version_ioctl() -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KvmError) as caught:
        Kvm("/dev/null")
    assert (caught.value.op, caught.value.errno) == ("KVM_GET_API_VERSION", errno.ENOTTY)
    assert len(os.listdir("/proc/self/fd")) == before  # closed at once, not by the GC


def _open_as_nobody(path: str) -> str:
    """Kvm(path) in a forked child that dropped root; returns "errno|message" of its KvmError."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                Kvm(path)
            except KvmError as err:
                os.write(write_end, f"{err.errno}|{err}".encode())
                status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    return said


def test_an_inaccessible_device_says_who_needs_access(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "kvm")
    with open(path, "w"):
        pass
    os.chmod(path, 0)
    if os.geteuid() == 0:
        number, _, message = _open_as_nobody(path).partition("|")
    else:
        with pytest.raises(KvmError) as caught:
            Kvm(path)
        number, message = str(caught.value.errno), str(caught.value)
    assert int(number) == errno.EACCES
    assert message.startswith(f"open {path} failed: EACCES")
    assert "read-write access" in message


def test_a_missing_capability_names_the_op_and_the_cap() -> None:
    err = missing_capability("KVM_X86_SET_MSR_FILTER", "KVM_CAP_X86_MSR_FILTER", 189)
    assert err.errno == errno.EOPNOTSUPP
    name = errno.errorcode[errno.EOPNOTSUPP]  # ENOTSUP on Linux: the same number
    assert str(err).startswith(f"KVM_X86_SET_MSR_FILTER failed: {name}")
    assert "needs KVM_CAP_X86_MSR_FILTER (189)" in str(err)


@pytest.mark.parametrize(("cls", "nargs"), [(Vm, 2), (Vcpu, 3), (GuestMemory, 3), (Probe, 4)])
def test_children_cannot_be_constructed_directly(cls: type, nargs: int) -> None:
    with pytest.raises(TypeError, match="must be made by"):
        cls(object(), *[None] * nargs)


def test_guest_errors_read_plainly() -> None:
    assert str(GuestTimeout(0.5)) == "the guest must stop within 0.5 s, but was still running"
    assert "vector 6 at 0000:1000" in str(GuestFault(6, 0, 0x1000))
    assert "vector >= 32" in str(GuestFault(32, 0, 0x1000))
    assert "Shutdown()" in str(UnexpectedExit(Shutdown(), "triple fault"))


@pytest.mark.parametrize(("op", "message"), [
    (MsrAccess(0x10, Access.RW), "must be a read or a write"),
    (MsrAccess(1 << 32, Access.R), "must be a u32"),
    (MsrAccess(0x10, Access.W, 1 << 64), "must be a u64"),
], ids=["an op is a read or a write", "the index is 32 bits", "the value is 64 bits"])
def test_probe_refuses_what_rdmsr_wrmsr_cannot_express(op: MsrAccess, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_access(op)


def test_ops_split_into_runs_of_one_actor_and_bounded_guest_batches() -> None:
    g = MsrAccess(msr=0x10, access=Access.R)
    h = MsrAccess(msr=0x10, access=Access.R, initiator=Initiator.HOST)
    ops = [g, g, h, h, g] + [g] * (MAX_OPS_PER_RUN + 1)
    spans = [(start, len(batch), batch[0].initiator) for start, batch in _batches(ops)]
    assert spans == [(0, 2, Initiator.GUEST), (2, 2, Initiator.HOST), (4, MAX_OPS_PER_RUN, Initiator.GUEST),
                     (4 + MAX_OPS_PER_RUN, 2, Initiator.GUEST)]


def test_an_msr_answer_value_is_64_bits() -> None:
    with pytest.raises(UsageError, match="must be a u64"):
        MsrAnswer(value=-1)
