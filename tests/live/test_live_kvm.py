"""The Kvm, Vm and Vcpu handles against the real /dev/kvm (skipped, with the reason, without it)."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import struct

import pytest

from msrvirt.arch.kvm import KVM_MAX_MSR_ENTRIES, ExitReason
from msrvirt.errors import UsageError
from msrvirt.live.errors import KvmError
from msrvirt.live.exits import (
    FailEntry,
    Hlt,
    InternalError,
    InternalSuberror,
    Io,
    IoDirection,
    Mmio,
    Shutdown,
    SystemEvent,
    Unknown,
)
from msrvirt.live.kvm import CpuidEntry, Kvm, MsrEntry, Vcpu
from msrvirt.live.uapi import KVM_RUN_EXIT_OFFSET, Cap
from msrvirt.policy.filter import NO_FILTER, FilterRange, MsrFilter

pytestmark = pytest.mark.kvm

NONEXISTENT_MSR = 0x474F4F00  # userspace_msr_exit_test's "MSR_NON_EXISTENT"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def vm_size_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize in /proc/self/status")


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def kvm_fds() -> list[int]:
    """This process's open descriptors on /dev/kvm or a KVM anon inode (kvm-vm, kvm-vcpu)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used
        if "kvm" in target:
            out.append(int(name))
    return out


def test_every_kvm_descriptor_is_close_on_exec(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        fds = kvm_fds()
        # Python's mmap keeps a dup of the vCPU fd for its mapping of kvm_run.
        assert {kvm.fd, vm.fd, vcpu.fd} <= set(fds) and len(fds) == 4
        for fd in fds:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_closing_a_parent_closes_its_children_first(kvm: Kvm) -> None:
    before = open_fds()
    kvm = Kvm()  # a second handle, to close under the test's eyes
    vm = kvm.create_vm()
    vm.add_memory(0, 0x1000)
    vcpu = vm.create_vcpu()
    assert open_fds() == before + 4  # kvm, vm, vcpu, and mmap's dup of the vcpu fd
    kvm.close()
    assert (kvm.closed, vm.closed, vcpu.closed) == (True, True, True)
    assert vm.memory == () and open_fds() == before
    kvm.close()  # twice is harmless


def test_a_handle_dropped_without_close_is_closed_when_collected(kvm: Kvm) -> None:
    before = open_fds()
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu()
    assert open_fds() == before + 3
    del vm, vcpu
    gc.collect()
    assert open_fds() == before


def test_a_thousand_vm_cycles_leak_no_fd_and_no_memory(kvm: Kvm) -> None:
    def cycle() -> None:
        with kvm.create_vm() as vm:
            vm.add_memory(0, 0x10000).write(0, b"\xf4")
            vm.create_vcpu()

    for _ in range(50):  # warm up allocator caches before measuring
        cycle()
    fds, size, rss = open_fds(), vm_size_kib(), rss_kib()
    for _ in range(1000):
        cycle()
    gc.collect()
    assert open_fds() == fds
    # A leaked kvm_run (12 KiB) or guest slot (64 KiB) per cycle would add >= 12 MiB.
    assert vm_size_kib() - size < 4096
    assert rss_kib() - rss < 4096


def test_kvm_reports_api_12_and_the_msr_capabilities(kvm: Kvm) -> None:
    assert kvm.api_version() == 12
    assert kvm.check_extension(Cap.X86_USER_SPACE_MSR) > 0
    assert kvm.check_extension(Cap.X86_MSR_FILTER) > 0
    with kvm.create_vm() as vm:
        assert vm.check_extension(Cap.X86_MSR_FILTER) > 0
    assert kvm.check_extension(0xFFFF) == 0  # a capability nobody has defined


def test_supported_cpuid_starts_with_a_vendor_leaf(kvm: Kvm) -> None:
    cpuid = kvm.supported_cpuid()
    leaf0 = next(e for e in cpuid if e.key == (0, 0))
    assert leaf0.eax >= 1
    assert len({e.key for e in cpuid}) == len(cpuid)


def test_msr_lists_are_not_empty_and_list_the_tsc(kvm: Kvm) -> None:
    listed = kvm.msr_index_list()
    assert 0x10 in listed and len(set(listed)) == len(listed)
    features = kvm.msr_feature_index_list()
    values = kvm.get_feature_msrs(features)
    assert values.processed == len(features)
    assert [e.index for e in values.entries] == list(features)


def test_registers_round_trip(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        regs = vcpu.get_regs()
        regs.rax, regs.rip, regs.rflags = 0x1234, 0x1000, 0x2
        vcpu.set_regs(regs)
        back = vcpu.get_regs()
        assert (back.rax, back.rip, back.rflags) == (0x1234, 0x1000, 0x2)
        sregs = vcpu.get_sregs()
        assert sregs.cs.selector == 0xF000  # the reset vector's segment (SDM 10.1.4)
        sregs.cs.base, sregs.cs.selector = 0, 0
        vcpu.set_sregs(sregs)
        assert (vcpu.get_sregs().cs.base, vcpu.get_sregs().cs.selector) == (0, 0)


def test_guest_cpuid_is_what_was_set(kvm: Kvm) -> None:
    supported = kvm.supported_cpuid()
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        vcpu.set_cpuid(supported)
        got = {e.key for e in vcpu.get_cpuid()}
        assert {e.key for e in supported} <= got


def test_host_msr_access_returns_the_processed_count_even_when_zero(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        vcpu.set_cpuid(kvm.supported_cpuid())
        got = vcpu.get_msrs([0x10, NONEXISTENT_MSR, 0x10])
        assert got.processed == 1  # KVM stops at the first MSR it cannot read
        assert [e.index for e in got.entries] == [0x10]
        assert vcpu.get_msrs([NONEXISTENT_MSR]).processed == 0
        assert vcpu.set_msrs([MsrEntry(index=NONEXISTENT_MSR, data=1)]) == 0
        assert vcpu.set_msrs([MsrEntry(index=0x3B, data=0)]) == 1  # IA32_TSC_ADJUST


def test_more_than_255_host_msr_entries_is_e2big(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        with pytest.raises(KvmError) as caught:
            vcpu.get_msrs([0x10] * (KVM_MAX_MSR_ENTRIES + 1))
        assert (caught.value.op, caught.value.errno) == ("KVM_GET_MSRS", errno.E2BIG)


def test_kvm_rejects_a_bad_filter_with_einval_naming_the_ioctl(kvm: Kvm) -> None:
    bad = MsrFilter(flags=0x2)  # only DEFAULT_DENY (1) is a valid filter flag
    with kvm.create_vm() as vm:
        with pytest.raises(KvmError) as caught:
            vm.set_msr_filter(bad)
        assert str(caught.value) == "KVM_X86_SET_MSR_FILTER failed: EINVAL (Invalid argument)"
        assert caught.value.errno == errno.EINVAL


def test_kvm_accepts_the_largest_valid_filter(kvm: Kvm) -> None:
    nmsrs = 0x600 * 8
    ranges = tuple(
        FilterRange(flags=3, base=i * nmsrs, nmsrs=nmsrs, allow_bits=b"\xa5" * 0x600)
        for i in range(16))
    with kvm.create_vm() as vm:
        vm.set_msr_filter(MsrFilter(flags=1, ranges=ranges))
        vm.set_msr_filter(NO_FILTER)


def test_a_range_whose_bitmap_is_too_big_is_refused_without_copying_it(kvm: Kvm) -> None:
    huge = FilterRange(flags=1, base=0, nmsrs=0xFFFFFFFF, allow_bits=b"")
    with kvm.create_vm() as vm, pytest.raises(KvmError) as caught:
        vm.set_msr_filter(MsrFilter(ranges=(huge,)))
    assert caught.value.errno == errno.EINVAL


def test_an_exit_mask_outside_the_three_reasons_is_einval(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        vm.enable_user_space_msr(ExitReason.INVAL | ExitReason.UNKNOWN | ExitReason.FILTER)
        with pytest.raises(KvmError) as caught:
            vm.enable_user_space_msr(0x8)
        assert (caught.value.op, caught.value.errno) == ("KVM_ENABLE_CAP", errno.EINVAL)


def test_memory_must_be_whole_pages(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, pytest.raises(UsageError, match="whole pages"):
        vm.add_memory(0, 100)


def test_guest_memory_refuses_access_outside_its_slot(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        mem = vm.add_memory(0x10000, 0x1000)
        mem.write(0x10FFF, b"\x01")
        assert mem.read(0x10FFF, 1) == b"\x01"
        with pytest.raises(UsageError, match="must lie in slot 0"):
            mem.read(0x10FFF, 2)


def _real_mode_vcpu(kvm: Kvm, code: bytes):  # type: ignore[no-untyped-def]
    vm = kvm.create_vm()
    vm.add_memory(0, 0x10000).write(0x1000, code)
    vcpu = vm.create_vcpu()
    sregs = vcpu.get_sregs()
    sregs.cs.base, sregs.cs.selector = 0, 0
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip, regs.rflags, regs.rsp = 0x1000, 0x2, 0x800
    vcpu.set_regs(regs)
    return vm, vcpu


@pytest.mark.parametrize(("code", "expected"), [
    (b"\xf4", Hlt()),
    (b"\xb0\x2a\xe6\x80", Io(direction=IoDirection.OUT, port=0x80, size=1, count=1,
                             data=b"\x2a")),
], ids=["hlt is a Hlt exit", "out 0x80, al is an Io exit with the byte"])
def test_run_decodes_typed_exits(kvm: Kvm, code: bytes, expected: object) -> None:
    vm, vcpu = _real_mode_vcpu(kvm, code)
    with vm:
        assert vcpu.run() == expected
        assert vcpu.runs == 1


def test_run_on_a_closed_vcpu_is_ebadf(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        vcpu = vm.create_vcpu()
        vcpu.close()
        with pytest.raises(KvmError) as caught:
            vcpu.run()
        assert (caught.value.op, caught.value.errno) == ("KVM_RUN", errno.EBADF)


def test_cpuid_entries_are_plain_values() -> None:
    entry = CpuidEntry(function=7, index=1, eax=1 << 17)
    assert entry.key == (7, 1) and entry.regs == (1 << 17, 0, 0, 0)


@pytest.mark.parametrize(("code", "expected"), [
    (b"\xb8\x00\x20\x8e\xd8\xb0\x2a\xa2\x00\x00",  # mov ax,0x2000; mov ds,ax; mov al,42; mov [0],al
     Mmio(phys_addr=0x20000, length=1, direction=IoDirection.OUT, data=b"\x2a")),
    (b"\xb8\x00\x20\x8e\xd8\xa0\x00\x00",  # mov ax,0x2000; mov ds,ax; mov al,[0]
     Mmio(phys_addr=0x20000, length=1, direction=IoDirection.IN, data=b"\x00")),
], ids=["a store outside every slot is an Mmio write", "a load there is an Mmio read"])
def test_an_access_outside_memory_is_an_mmio_exit(
        kvm: Kvm, code: bytes, expected: Mmio) -> None:
    vm, vcpu = _real_mode_vcpu(kvm, code)
    with vm:
        assert vcpu.run() == expected


def _fake_exit(vcpu: Vcpu, kind: int, union: bytes) -> None:
    """Write an exit into the mapped kvm_run as KVM would: kinds no guest portably causes."""
    data = vcpu._map  # the shared kvm_run page: userspace may write it
    struct.pack_into("<I", data, 8, kind)
    data[KVM_RUN_EXIT_OFFSET: KVM_RUN_EXIT_OFFSET + len(union)] = union


@pytest.mark.parametrize(("kind", "union", "expected"), [
    (17, struct.pack("<II3Q", 1, 3, 1, 0xF00F, 7),
     InternalError(suberror=InternalSuberror.EMULATION, data=(1, 0xF00F, 7))),
    (17, struct.pack("<II", 99, 0), InternalError(suberror=99, data=())),
    (9, struct.pack("<QI", 0x21, 1), FailEntry(hardware_entry_failure_reason=0x21, cpu=1)),
    (24, struct.pack("<II2Q", 1, 2, 5, 6), SystemEvent(type=1, data=(5, 6))),
    (8, b"", Shutdown()),
    (37, b"", Unknown(exit_reason=37)),
], ids=["an emulation failure", "an internal error with a new suberror",
        "a failed entry", "a system event", "a shutdown", "an undecoded kind (NOTIFY)"])
def test_every_exit_kind_decodes_to_its_typed_value(
        kvm: Kvm, kind: int, union: bytes, expected: object) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu:
        _fake_exit(vcpu, kind, union)
        assert vcpu._decode() == expected
