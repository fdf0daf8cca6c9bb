"""Handles on /dev/kvm, a VM and a vCPU, shaped like rust-vmm's kvm-ioctls (Kvm, VmFd, VcpuFd).

Each handle owns one file descriptor, opened close-on-exec, and is a context
manager; a `Vm` is made only by `Kvm.create_vm` and a `Vcpu` only by
`Vm.create_vcpu`; closing a parent closes its children first.  A handle that is
dropped without being closed is closed when it is garbage-collected.  Every
failed system call raises `KvmError` naming the ioctl and the errno
(Documentation/virt/kvm/api.rst is the contract for each ioctl).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from msrvirt.arch.kvm import EXIT_REASON_VALID_MASK, KVM_MSR_FILTER_MAX_BITMAP_SIZE, ExitReason
from msrvirt.errors import UsageError
from msrvirt.live.errors import GuestTimeout, KvmError, missing_capability
from msrvirt.live.exits import (
    Exit,
    FailEntry,
    Hlt,
    InternalError,
    InternalSuberror,
    Io,
    IoDirection,
    Mmio,
    MsrAnswer,
    Shutdown,
    SystemEvent,
    Unknown,
    X86Rdmsr,
    X86Wrmsr,
)
from msrvirt.live.timer import TimeLimit
from msrvirt.live.uapi import (
    KVM_API_VERSION,
    KVM_RUN_EXIT_OFFSET,
    Cap,
    ExitFailEntry,
    ExitInternal,
    ExitIo,
    ExitKind,
    ExitMmio,
    ExitMsr,
    ExitSystemEvent,
    Ioctl,
    KvmCpuidEntry2,
    KvmEnableCap,
    KvmRegs,
    KvmRun,
    KvmSregs,
    KvmUserspaceMemoryRegion,
    cpuid2_type,
    msr_list_type,
    msrs_type,
)
from msrvirt.policy.filter import MsrFilter, bitmap_size_bytes

DEV_KVM = "/dev/kvm"


def ioctl(fd: int, request: Ioctl, arg: int | ctypes.Structure | ctypes.Array[Any] = 0) -> int:
    """Make one ioctl; return its non-negative result or raise KvmError(request name, errno).

    A structure argument is passed with mutate_flag=True: fcntl.ioctl then returns the
    ioctl's result and copies the kernel's writes back into ``arg``.  A closed handle's
    fd (-1) gives EBADF, as the kernel would for any invalid descriptor.
    """
    if fd < 0:
        raise KvmError(request.name, errno.EBADF, "the handle is closed")
    try:
        if isinstance(arg, int):
            return fcntl.ioctl(fd, request, arg)
        ret: int = fcntl.ioctl(fd, request, arg, True)  # typeshed: Any for a generic Buffer
        return ret
    except OSError as err:
        raise KvmError(request.name, err.errno or errno.EIO) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuidEntry:
    """One struct kvm_cpuid_entry2: CPUID.(EAX=function, ECX=index) and KVM's flags."""

    function: int
    index: int = 0
    flags: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.function, self.index)

    @property
    def regs(self) -> tuple[int, int, int, int]:
        return (self.eax, self.ebx, self.ecx, self.edx)


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrEntry:
    """One struct kvm_msr_entry: an MSR index and a value."""

    index: int
    data: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MsrBatch:
    """What KVM_GET_MSRS returned: how many entries it processed, and those entries.

    KVM stops at the first MSR it cannot access, so ``processed`` may be less than
    the number asked for, including 0; that is a result, not an error (api.rst).
    """

    processed: int
    entries: tuple[MsrEntry, ...]


def _read_cpuid(fd: int, request: Ioctl) -> tuple[CpuidEntry, ...]:
    """A CPUID-returning ioctl, growing the buffer while the kernel says E2BIG (as QEMU does)."""
    nent = 128
    while True:
        buf = cpuid2_type(nent)()
        buf.nent = nent
        try:
            ioctl(fd, request, buf)
        except KvmError as err:
            if err.errno == errno.E2BIG and nent < 1 << 14:
                nent *= 2
                continue
            raise
        return _cpuid_entries(buf.entries, buf.nent)


class Closing:
    """A context manager that calls ``close()`` on leaving ``with`` (handles and the probe)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Handle(Closing):
    """One open KVM file descriptor, closed by `close`, by ``with`` or when collected."""

    _fd: int

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)
        self._children: weakref.WeakSet[_Handle] = weakref.WeakSet()

    @property
    def fd(self) -> int:
        """The file descriptor, or -1 once closed."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the children, then this descriptor; closing twice is harmless."""
        if self._fd < 0:
            return
        for child in list(self._children):
            child.close()
        self._release()
        self._fd = -1
        self._finalizer()

    def _release(self) -> None:
        """Free what this handle holds besides its descriptor (mappings)."""


_CREATE = object()  # passed by parents only: Vm and Vcpu are not made directly


def _check_token(token: object, what: str, maker: str) -> None:
    if token is not _CREATE:
        raise TypeError(f"a {what} must be made by {maker}, not constructed directly")


class Kvm(_Handle):
    """/dev/kvm: system ioctls, and the maker of VMs.

    Opening checks KVM_GET_API_VERSION is 12 (api.rst: any other value is not KVM).
    """

    def __init__(self, path: str = DEV_KVM) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            hint = {
                errno.ENOENT: "is the kvm module loaded?",
                errno.EACCES: "the user needs read-write access (the kvm group, or root)",
                errno.EPERM: "the user needs read-write access (the kvm group, or root)",
            }.get(err.errno or 0, "")
            raise KvmError(f"open {path}", err.errno or errno.EIO, hint) from None
        super().__init__(fd)
        self.path = path
        self._caps: dict[int, int] = {}
        self._mmap_size: int | None = None
        try:
            version = self.api_version()
            if version != KVM_API_VERSION:
                raise KvmError(
                    "KVM_GET_API_VERSION", errno.EPROTO,
                    f"the KVM API version must be {KVM_API_VERSION}, not {version}",
                )
        except BaseException:
            self.close()  # now, not when the traceback lets this object go
            raise

    def api_version(self) -> int:
        """KVM_GET_API_VERSION."""
        return ioctl(self._fd, Ioctl.KVM_GET_API_VERSION)

    def check_extension(self, cap: Cap | int) -> int:
        """KVM_CHECK_EXTENSION on /dev/kvm: 0 = unsupported, else a cap-specific positive value."""
        value = self._caps.get(cap)
        if value is None:
            value = self._caps[cap] = ioctl(self._fd, Ioctl.KVM_CHECK_EXTENSION, int(cap))
        return value

    def require(self, cap: Cap, op: str) -> int:
        """The capability's value; raise KvmError naming ``op`` and the cap when it is 0."""
        value = self.check_extension(cap)
        if not value:
            raise missing_capability(op, cap.uapi_name, int(cap))
        return value

    @property
    def vcpu_mmap_size(self) -> int:
        """KVM_GET_VCPU_MMAP_SIZE: bytes to map from a vCPU fd (kvm_run and its data pages)."""
        if self._mmap_size is None:
            self._mmap_size = ioctl(self._fd, Ioctl.KVM_GET_VCPU_MMAP_SIZE)
        return self._mmap_size

    def supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        """KVM_GET_SUPPORTED_CPUID: the CPUID bits KVM can offer a guest (needs KVM_CAP_EXT_CPUID).

        Grows the buffer while the kernel says E2BIG, like QEMU's get_supported_cpuid.
        """
        self.require(Cap.EXT_CPUID, Ioctl.KVM_GET_SUPPORTED_CPUID.name)
        return _read_cpuid(self._fd, Ioctl.KVM_GET_SUPPORTED_CPUID)

    def msr_index_list(self) -> tuple[int, ...]:
        """KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores, in the kernel's order."""
        return self._msr_list(Ioctl.KVM_GET_MSR_INDEX_LIST)

    def msr_feature_index_list(self) -> tuple[int, ...]:
        """KVM_GET_MSR_FEATURE_INDEX_LIST: the feature MSRs (needs KVM_CAP_GET_MSR_FEATURES)."""
        self.require(Cap.GET_MSR_FEATURES, Ioctl.KVM_GET_MSR_FEATURE_INDEX_LIST.name)
        return self._msr_list(Ioctl.KVM_GET_MSR_FEATURE_INDEX_LIST)

    def _msr_list(self, request: Ioctl) -> tuple[int, ...]:
        # The kernel writes the count it needs before failing with E2BIG; grow until it fits.
        capacity = 256
        while True:
            buf = msr_list_type(capacity)()
            buf.nmsrs = capacity
            try:
                ioctl(self._fd, request, buf)
            except KvmError as err:
                if err.errno == errno.E2BIG and capacity < 1 << 16:
                    capacity = max(capacity * 2, int(buf.nmsrs))
                    continue
                raise
            return tuple(int(i) for i in buf.indices[: buf.nmsrs])

    def get_feature_msrs(self, indices: Sequence[int]) -> MsrBatch:
        """KVM_GET_MSRS on /dev/kvm: the values of feature MSRs (api.rst, KVM_GET_MSRS)."""
        self.require(Cap.GET_MSR_FEATURES, "KVM_GET_MSRS (system)")
        return _get_msrs(self._fd, indices)

    def create_vm(self) -> Vm:
        """KVM_CREATE_VM (default machine type); the VM is closed with this handle at the latest."""
        fd = ioctl(self._fd, Ioctl.KVM_CREATE_VM, 0)
        vm = Vm(_CREATE, self, fd)
        self._children.add(vm)
        return vm


class GuestMemory:
    """Anonymous host memory backing one KVM memory slot; made by `Vm.add_memory`."""

    def __init__(self, token: object, slot: int, guest_phys_addr: int, size: int) -> None:
        _check_token(token, "GuestMemory", "Vm.add_memory()")
        self.slot = slot
        self.guest_phys_addr = guest_phys_addr
        self.size = size
        self.buffer = mmap.mmap(
            -1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
        )
        # from_buffer pins the mapping only while the temporary lives: read the address and drop it.
        self.userspace_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.buffer))

    def _offset(self, gpa: int, length: int) -> int:
        off = gpa - self.guest_phys_addr
        if off < 0 or off + length > self.size:
            raise UsageError(
                f"guest range [{gpa:#x}, {gpa + length:#x}) must lie in slot {self.slot}"
                f" [{self.guest_phys_addr:#x}, {self.guest_phys_addr + self.size:#x})"
            )
        return off

    def read(self, gpa: int, length: int) -> bytes:
        """The ``length`` bytes at guest-physical address ``gpa``."""
        off = self._offset(gpa, length)
        return self.buffer[off: off + length]

    def write(self, gpa: int, data: bytes) -> None:
        """Store ``data`` at guest-physical address ``gpa``."""
        off = self._offset(gpa, len(data))
        self.buffer[off: off + len(data)] = data

    def close(self) -> None:
        self.buffer.close()


class Vm(_Handle):
    """A VM fd: memory slots, VM capabilities, the MSR filter, and the maker of vCPUs."""

    def __init__(self, token: object, kvm: Kvm, fd: int) -> None:
        _check_token(token, "Vm", "Kvm.create_vm()")
        super().__init__(fd)
        self.kvm = kvm
        self._memory: list[GuestMemory] = []

    @property
    def memory(self) -> tuple[GuestMemory, ...]:
        """The memory slots added so far, in slot order."""
        return tuple(self._memory)

    def check_extension(self, cap: Cap | int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd where KVM_CAP_CHECK_EXTENSION_VM allows, else system."""
        if self.kvm.check_extension(Cap.CHECK_EXTENSION_VM):
            return ioctl(self._fd, Ioctl.KVM_CHECK_EXTENSION, int(cap))
        return self.kvm.check_extension(cap)

    def add_memory(self, guest_phys_addr: int, size: int) -> GuestMemory:
        """Back [guest_phys_addr, +size) with fresh zeroed memory (KVM_SET_USER_MEMORY_REGION)."""
        if size <= 0 or size % mmap.PAGESIZE or guest_phys_addr % mmap.PAGESIZE:
            raise UsageError(
                f"guest memory must be whole pages ({mmap.PAGESIZE} bytes), not"
                f" {size:#x} bytes at {guest_phys_addr:#x}"
            )
        mem = GuestMemory(_CREATE, len(self._memory), guest_phys_addr, size)
        region = KvmUserspaceMemoryRegion(
            slot=mem.slot, flags=0, guest_phys_addr=guest_phys_addr, memory_size=size,
            userspace_addr=mem.userspace_addr,
        )
        try:
            ioctl(self._fd, Ioctl.KVM_SET_USER_MEMORY_REGION, region)
        except KvmError:
            mem.close()
            raise
        self._memory.append(mem)
        return mem

    def enable_cap(self, cap: Cap | int, *args: int, flags: int = 0) -> None:
        """KVM_ENABLE_CAP on the VM with ``args`` (at most four), as given: no checks."""
        _enable_cap(self._fd, cap, args, flags)

    def enable_user_space_msr(self, mask: ExitReason | int) -> None:
        """Make the guest's failed MSR accesses of these reasons exit to userspace (cap 188).

        ``mask`` is passed as given, so invalid bits reach the kernel (which says EINVAL).
        """
        self.kvm.require(Cap.X86_USER_SPACE_MSR, "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)")
        self.enable_cap(Cap.X86_USER_SPACE_MSR, int(mask))

    def set_msr_filter(self, msr_filter: MsrFilter) -> None:
        """KVM_X86_SET_MSR_FILTER with ``msr_filter``'s exact bytes (policy.filter); not validated.

        The kernel copies each bitmap during the call; the buffers live until it returns.
        A range's buffer holds BITS_TO_LONGS(nmsrs) * 8 bytes when that is within
        KVM_MSR_FILTER_MAX_BITMAP_SIZE (larger sizes are refused before any copy).
        """
        self.kvm.require(Cap.X86_MSR_FILTER, Ioctl.KVM_X86_SET_MSR_FILTER.name)
        bitmaps: list[ctypes.Array[ctypes.c_char] | None] = []
        for rng in msr_filter.ranges:
            if not rng.nmsrs:
                bitmaps.append(None)
                continue
            size = max(len(rng.allow_bits),
                       min(bitmap_size_bytes(rng.nmsrs), KVM_MSR_FILTER_MAX_BITMAP_SIZE))
            bitmaps.append(ctypes.create_string_buffer(rng.allow_bits, size))
        addrs = [0 if b is None else ctypes.addressof(b) for b in bitmaps]
        raw = msr_filter.to_kvm_bytes(addrs)
        arg = (ctypes.c_char * len(raw)).from_buffer_copy(raw)
        ioctl(self._fd, Ioctl.KVM_X86_SET_MSR_FILTER, arg)
        del bitmaps  # only now may the bitmaps go

    def create_vcpu(self, vcpu_id: int = 0) -> Vcpu:
        """KVM_CREATE_VCPU, and map its kvm_run."""
        fd = ioctl(self._fd, Ioctl.KVM_CREATE_VCPU, vcpu_id)
        try:
            vcpu = Vcpu(_CREATE, self, fd, vcpu_id)
        except BaseException:
            os.close(fd)
            raise
        self._children.add(vcpu)
        return vcpu

    def _release(self) -> None:
        # Nothing runs once the vCPUs are closed, so the memory can go before the VM's fd.
        memory, self._memory = self._memory, []
        for mem in memory:
            mem.close()


_REASONS = {value: ExitReason(value) for value in range(EXIT_REASON_VALID_MASK + 1)}
_NEEDS_COMPLETION = frozenset({ExitKind.IO, ExitKind.MMIO, ExitKind.X86_RDMSR,
                               ExitKind.X86_WRMSR})
_HLT = Hlt()
_SHUTDOWN = Shutdown()
_EXIT_AT = KVM_RUN_EXIT_OFFSET


def _enable_cap(fd: int, cap: Cap | int, args: tuple[int, ...], flags: int) -> None:
    """KVM_ENABLE_CAP on ``fd`` (a VM or a vCPU) with at most four args."""
    if len(args) > 4:
        raise UsageError(f"KVM_ENABLE_CAP takes at most 4 args, not {len(args)}")
    arg = KvmEnableCap(cap=int(cap), flags=flags)
    for i, value in enumerate(args):
        arg.args[i] = value
    ioctl(fd, Ioctl.KVM_ENABLE_CAP, arg)


class Vcpu(_Handle):
    """A vCPU fd and its mapped kvm_run: run it, answer its exits, get and set its state."""

    def __init__(self, token: object, vm: Vm, fd: int, vcpu_id: int) -> None:
        _check_token(token, "Vcpu", "Vm.create_vcpu()")
        # Map first: if that fails the caller still owns the fd (no finalizer yet).
        try:
            self._map = mmap.mmap(fd, vm.kvm.vcpu_mmap_size, flags=mmap.MAP_SHARED,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            raise KvmError("mmap(kvm_run)", err.errno or errno.EIO) from None
        super().__init__(fd)
        self.vm = vm
        self.vcpu_id = vcpu_id
        self.runs = 0  # KVM_RUN calls that returned an exit
        self._limit: TimeLimit | None = None
        # The last exit needs KVM_RUN to complete it (userspace I/O, MMIO or MSR exit).
        self._pending = False
        # Views into the mapping, made once: decoding an exit then reads fields directly.
        # They are made from the address, not from_buffer: a buffer export would stop the
        # mapping from closing while any frame (say, a traceback's) still held a view.
        # _release drops them before unmapping; every use checks self._run first.
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self._run: KvmRun | None = KvmRun.from_address(base)
        self._msr: ExitMsr | None = ExitMsr.from_address(base + _EXIT_AT)
        self._io: ExitIo | None = ExitIo.from_address(base + _EXIT_AT)
        self._mmio: ExitMmio | None = ExitMmio.from_address(base + _EXIT_AT)
        self._internal: ExitInternal | None = ExitInternal.from_address(base + _EXIT_AT)
        self._fail: ExitFailEntry | None = ExitFailEntry.from_address(base + _EXIT_AT)
        self._event: ExitSystemEvent | None = ExitSystemEvent.from_address(base + _EXIT_AT)

    def _release(self) -> None:
        self._run = self._msr = self._io = self._mmio = None
        self._internal = self._fail = self._event = None
        self._map.close()

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Exit:
        """KVM_RUN until the guest exits; return the exit, decoded.

        A signal interrupts KVM_RUN with EINTR: under an expired `time_limit` that
        raises GuestTimeout; otherwise KVM_RUN is simply made again.
        """
        fd = self._fd
        if fd < 0:
            raise KvmError(Ioctl.KVM_RUN.name, errno.EBADF, "the handle is closed")
        while True:
            try:
                fcntl.ioctl(fd, Ioctl.KVM_RUN, 0)
                break
            except OSError as err:
                if err.errno != errno.EINTR:
                    raise KvmError(Ioctl.KVM_RUN.name, err.errno or errno.EIO) from None
                limit = self._limit
                if limit is not None and limit.expired:
                    run = self._run
                    if run is not None:
                        run.immediate_exit = 0
                    raise GuestTimeout(limit.seconds, f"vCPU {self.vcpu_id}") from None
        self.runs += 1
        return self._decode()

    def complete_pending(self) -> None:
        """Let KVM finish the last exit without entering the guest (KVM_RUN, immediate_exit).

        After an I/O, MMIO or MSR exit, the instruction completes only on the next
        KVM_RUN; until then KVM_SET_REGS would be undone by that completion
        (api.rst, "immediate_exit").  Does nothing when no exit is pending.
        """
        run = self._run
        if not self._pending or run is None:
            return
        run.immediate_exit = 1
        try:
            fcntl.ioctl(self._fd, Ioctl.KVM_RUN, 0)
        except OSError as err:
            if err.errno != errno.EINTR:
                raise KvmError(Ioctl.KVM_RUN.name, err.errno or errno.EIO) from None
        finally:
            run.immediate_exit = 0
        self._pending = False

    def _decode(self) -> Exit:
        run = self._run
        if run is None:
            raise KvmError(Ioctl.KVM_RUN.name, errno.EBADF, "the vCPU is closed")
        kind = run.exit_reason
        self._pending = kind in _NEEDS_COMPLETION
        if kind == ExitKind.X86_RDMSR or kind == ExitKind.X86_WRMSR:
            msr = self._msr
            assert msr is not None  # the views live exactly as long as self._run
            reason = _REASONS.get(msr.reason)
            if reason is None:  # a reason bit newer than this code: keep it (IntFlag KEEP)
                reason = ExitReason(msr.reason)
            cls = X86Rdmsr if kind == ExitKind.X86_RDMSR else X86Wrmsr
            return cls(reason=reason, index=msr.index, data=msr.data)
        if kind == ExitKind.HLT:
            return _HLT
        if kind == ExitKind.IO:
            io = self._io
            assert io is not None
            length = io.size * io.count
            return Io(direction=IoDirection(io.direction), port=io.port, size=io.size,
                      count=io.count, data=self._map[io.data_offset: io.data_offset + length])
        if kind == ExitKind.MMIO:
            mmio = self._mmio
            assert mmio is not None
            return Mmio(phys_addr=mmio.phys_addr, length=mmio.len,
                        direction=IoDirection.OUT if mmio.is_write else IoDirection.IN,
                        data=bytes(mmio.data)[: min(mmio.len, 8)])
        if kind == ExitKind.SHUTDOWN:
            return _SHUTDOWN
        if kind == ExitKind.FAIL_ENTRY:
            fail = self._fail
            assert fail is not None
            return FailEntry(hardware_entry_failure_reason=fail.hardware_entry_failure_reason,
                             cpu=fail.cpu)
        if kind == ExitKind.INTERNAL_ERROR:
            internal = self._internal
            assert internal is not None
            sub = internal.suberror
            return InternalError(
                suberror=InternalSuberror(sub) if sub in InternalSuberror._value2member_map_
                else sub,
                data=tuple(internal.data[: min(internal.ndata, 16)]),
            )
        if kind == ExitKind.SYSTEM_EVENT:
            event = self._event
            assert event is not None
            return SystemEvent(type=event.type, data=tuple(event.data[: min(event.ndata, 16)]))
        return Unknown(exit_reason=kind)

    def answer_msr(self, answer: MsrAnswer) -> None:
        """Fill kvm_run.msr for the next KVM_RUN: error (non-zero = #GP) and, for a read, data."""
        msr = self._msr
        if msr is None:
            raise KvmError(Ioctl.KVM_RUN.name, errno.EBADF, "the vCPU is closed")
        msr.error = answer.reply
        msr.data = answer.value

    @contextmanager
    def time_limit(self, seconds: float) -> Iterator[TimeLimit]:
        """Within the block, a KVM_RUN still running ``seconds`` after entry raises GuestTimeout.

        Must be used in the main thread (see msrvirt.live.timer).
        """
        outer = self._limit
        with TimeLimit(seconds, self._stop) as limit:
            self._limit = limit
            try:
                yield limit
            finally:
                self._limit = outer
                if self._run is not None:
                    self._run.immediate_exit = 0

    def _stop(self) -> None:
        # Runs in the SIGALRM handler: make any KVM_RUN about to start return EINTR at once.
        if self._run is not None:
            self._run.immediate_exit = 1

    # -- state -------------------------------------------------------------------------------

    def get_regs(self) -> KvmRegs:
        """KVM_GET_REGS."""
        regs = KvmRegs()
        ioctl(self._fd, Ioctl.KVM_GET_REGS, regs)
        return regs

    def set_regs(self, regs: KvmRegs) -> None:
        """KVM_SET_REGS."""
        ioctl(self._fd, Ioctl.KVM_SET_REGS, regs)

    def get_sregs(self) -> KvmSregs:
        """KVM_GET_SREGS."""
        sregs = KvmSregs()
        ioctl(self._fd, Ioctl.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: KvmSregs) -> None:
        """KVM_SET_SREGS."""
        ioctl(self._fd, Ioctl.KVM_SET_SREGS, sregs)

    def set_cpuid(self, entries: Iterable[CpuidEntry]) -> None:
        """KVM_SET_CPUID2: the guest's CPUID (api.rst: before the first KVM_RUN, or identical)."""
        listed = list(entries)
        buf = cpuid2_type(len(listed))()
        buf.nent = len(listed)
        for slot, entry in zip(buf.entries, listed, strict=True):
            slot.function, slot.index, slot.flags = entry.function, entry.index, entry.flags
            slot.eax, slot.ebx, slot.ecx, slot.edx = entry.regs
        ioctl(self._fd, Ioctl.KVM_SET_CPUID2, buf)

    def enable_cap(self, cap: Cap | int, *args: int, flags: int = 0) -> None:
        """KVM_ENABLE_CAP on the vCPU (e.g. KVM_CAP_ENFORCE_PV_FEATURE_CPUID), as given."""
        _enable_cap(self._fd, cap, args, flags)

    def get_cpuid(self) -> tuple[CpuidEntry, ...]:
        """KVM_GET_CPUID2: the CPUID the guest sees (after KVM's own adjustments)."""
        return _read_cpuid(self._fd, Ioctl.KVM_GET_CPUID2)

    def get_msrs(self, indices: Sequence[int]) -> MsrBatch:
        """Host-initiated KVM_GET_MSRS; the filter does not apply (api.rst, kvm-msr-facts 4)."""
        return _get_msrs(self._fd, indices)

    def set_msrs(self, entries: Sequence[MsrEntry]) -> int:
        """Host-initiated KVM_SET_MSRS; return how many entries KVM processed.

        KVM stops at the first entry it refuses, so the count may be short, even 0.
        """
        buf = msrs_type(len(entries))()
        buf.nmsrs = len(entries)
        for slot, entry in zip(buf.entries, entries, strict=True):
            slot.index, slot.data = entry.index, entry.data
        return ioctl(self._fd, Ioctl.KVM_SET_MSRS, buf)


def _get_msrs(fd: int, indices: Sequence[int]) -> MsrBatch:
    buf = msrs_type(len(indices))()
    buf.nmsrs = len(indices)
    for slot, index in zip(buf.entries, indices, strict=True):
        slot.index = index
    processed = ioctl(fd, Ioctl.KVM_GET_MSRS, buf)
    return MsrBatch(
        processed=processed,
        entries=tuple(MsrEntry(index=e.index, data=e.data) for e in buf.entries[:processed]),
    )


def _cpuid_entries(entries: ctypes.Array[KvmCpuidEntry2], nent: int) -> tuple[CpuidEntry, ...]:
    return tuple(
        CpuidEntry(function=e.function, index=e.index, flags=e.flags,
                   eax=e.eax, ebx=e.ebx, ecx=e.ecx, edx=e.edx)
        for e in entries[:nent]
    )
