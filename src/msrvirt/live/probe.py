"""The probe guest: a real-mode program that runs a table of RDMSR/WRMSR and records each outcome.

Userspace writes a table of operations into guest memory; the guest walks it,
executes each RDMSR/WRMSR, catches #GP itself (its real-mode IVT vector 13
handler records the fault and resumes after the two-byte instruction) and
writes back per operation the value read or the fault, then HLTs.  Only the
exits KVM itself makes reach userspace: userspace MSR exits
(KVM_EXIT_X86_RDMSR/WRMSR, answered through a callback and recorded with their
reason, index and data) and the final HLT.  Host-initiated operations become
KVM_GET_MSRS / KVM_SET_MSRS between guest runs.  Facts the probe checks are in
kvm-msr-facts.md sections 4 and 5 and kvm-svm-common-pvm-facts.md part 2.

Guest-physical layout (one 1 MiB slot at 0; CS = SS = 0):

  0x00000  real-mode IVT (256 vectors)
  0x00800  diagnostics written by the unexpected-exception handler
  0x01000  stack top (SS:SP = 0:1000, grows down)
  0x01000  code (`PROGRAM`)
  0x10000  the operation table: 16-byte records from segment 0x1000 up to 0xFFFFF

A record (little-endian): u32 index; u8 kind (0 = RDMSR, 1 = WRMSR); u8 pad;
u16 status (0 = not run, 1 = done, 2 = #GP); u64 value (in: to write; out: read).
The guest sets status 1 just before the MSR instruction (the #GP handler turns
it into 2), so while an MSR exit is pending the op being executed is the last
record whose status is not 0.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.conform.predict import Result
from msrvirt.live.asm import Asm16, Program
from msrvirt.live.errors import GuestFault, UnexpectedExit
from msrvirt.live.exits import (
    ANSWER_GP,
    Hlt,
    Io,
    IoDirection,
    MsrAnswer,
    MsrExit,
    X86Rdmsr,
    X86Wrmsr,
)
from msrvirt.live.kvm import Closing, CpuidEntry, GuestMemory, Kvm, MsrEntry, Vcpu, Vm
from msrvirt.policy.decide import Initiator, MsrAccess
from msrvirt.policy.filter import MsrFilter

MEMORY_BYTES = 0x100000
DIAG_ADDR = 0x0800
STACK_TOP = 0x1000
CODE_ADDR = 0x1000
TABLE_ADDR = 0x10000
TABLE_SEGMENT = TABLE_ADDR >> 4
RECORD = struct.Struct("<IBxHQ")
MAX_OPS_PER_RUN = (MEMORY_BYTES - TABLE_ADDR) // RECORD.size  # 61440
PORT_UNEXPECTED = 0xE9  # the guest's OUT when it takes an exception it does not handle
N_STUBS = 33  # vectors 0..31 each get a stub; every vector >= 32 shares the last one
DEFAULT_TIME_LIMIT_S = 10.0
_STATUS_AT = 6  # offset of the status word in a record

NO_EXITS = ExitReason(0)


class Status(IntEnum):
    """The status word the guest writes into a record."""

    NOT_RUN = 0
    DONE = 1
    GP = 2


def _program() -> Program:
    """The whole guest: main loop, #GP handler, exception stubs, unexpected-exception handler."""
    a = Asm16(CODE_ADDR)
    a.label("start")
    a.op(b"\xb8" + TABLE_SEGMENT.to_bytes(2, "little"), f"mov ax, {TABLE_SEGMENT:#x}")
    a.op(b"\x8e\xd8", "mov ds, ax")  # DS:SI walks the table
    a.op(b"\x31\xf6", "xor si, si")
    a.op(b"\x66\x85\xed", "test ebp, ebp")  # EBP = records to run (set by userspace)
    a.jump8(0x74, "done", "je done")
    # Each instruction here is emulated by KVM on some backends: the loop is kept short.
    a.label("next")
    a.op(b"\x66\x8b\x0c", "mov ecx, dword ptr [si]")  # ECX = MSR index
    a.op(b"\xc7\x44\x06\x01\x00", "mov word ptr [si+6], 1")  # done, unless #GP says 2
    a.op(b"\x80\x7c\x04\x00", "cmp byte ptr [si+4], 0")
    a.jump8(0x75, "write", "jne write")
    a.label("rdmsr_at")
    a.op(b"\x0f\x32", "rdmsr")
    a.op(b"\x66\x89\x44\x08", "mov dword ptr [si+8], eax")  # after #GP: stale, ignored
    a.op(b"\x66\x89\x54\x0c", "mov dword ptr [si+12], edx")
    a.jump8(0xEB, "step", "jmp step")
    a.label("write")
    a.op(b"\x66\x8b\x44\x08", "mov eax, dword ptr [si+8]")
    a.op(b"\x66\x8b\x54\x0c", "mov edx, dword ptr [si+12]")
    a.label("wrmsr_at")
    a.op(b"\x0f\x30", "wrmsr")
    a.label("step")
    a.op(b"\x83\xc6\x10", "add si, 16")
    a.jump8(0x74, "next_segment", "je next_segment")  # SI wrapped to 0: next 64 KiB
    a.label("count")
    a.op(b"\x66\x4d", "dec ebp")
    a.jump8(0x75, "next", "jne next")
    a.label("done")
    a.op(b"\xf4", "hlt")
    a.jump8(0xEB, "done", "jmp done")
    a.label("next_segment")
    a.op(b"\x8c\xd8", "mov ax, ds")
    a.op(b"\x05\x00\x10", "add ax, 0x1000")
    a.op(b"\x8e\xd8", "mov ds, ax")
    a.jump8(0xEB, "count", "jmp count")
    # #GP handler (IVT vector 13).  Real mode pushes FLAGS, CS, IP and no error code.
    # Only a fault of our RDMSR/WRMSR is expected; any other is reported as unexpected.
    a.label("gp_handler")
    a.op(b"\x55", "push bp")
    a.op(b"\x89\xe5", "mov bp, sp")  # [bp+2] = faulting IP
    a.imm16(b"\x81\x7e\x02", "rdmsr_at", "cmp word ptr [bp+2], {addr}")
    a.jump8(0x74, "gp_ours", "je gp_ours")
    a.imm16(b"\x81\x7e\x02", "wrmsr_at", "cmp word ptr [bp+2], {addr}")
    a.jump8(0x75, "gp_not_ours", "jne gp_not_ours")
    a.label("gp_ours")
    a.op(b"\x83\x46\x02\x02", "add word ptr [bp+2], 2")  # resume after RDMSR/WRMSR
    a.op(b"\xc7\x44\x06\x02\x00", "mov word ptr [si+6], 2")  # DS:SI is still the record
    a.op(b"\x5d", "pop bp")
    a.op(b"\xcf", "iret")
    a.label("gp_not_ours")
    a.op(b"\x5d", "pop bp")
    a.jump8(0xEB, "stub13", "jmp stub13")
    # Stub v is CALL unexpected: the return address it pushes says which vector it was.
    for vector in range(N_STUBS):
        a.label(f"stub{vector}")
        a.call16("unexpected", "call unexpected")
    a.label("unexpected")
    a.op(b"\x31\xc0", "xor ax, ax")
    a.op(b"\x8e\xd8", "mov ds, ax")
    for i in range(3):  # stub return address, faulting IP, faulting CS
        addr = DIAG_ADDR + 2 * i
        a.op(b"\x8f\x06" + addr.to_bytes(2, "little"), f"pop word ptr [{addr:#x}]")
    a.op(bytes([0xE6, PORT_UNEXPECTED]), f"out {PORT_UNEXPECTED:#x}, al")  # tell userspace
    a.label("stop")
    a.op(b"\xf4", "hlt")
    a.jump8(0xEB, "stop", "jmp stop")
    return a.build()


PROGRAM = _program()
STUB_SIZE = 3  # CALL rel16


def _ivt() -> bytes:
    """The real-mode IVT: vector 13 -> the #GP handler, others -> their stub (offset, segment 0)."""
    out = bytearray()
    for vector in range(256):
        if vector == 13:
            target = PROGRAM.labels["gp_handler"]
        else:
            target = PROGRAM.labels[f"stub{min(vector, N_STUBS - 1)}"]
        out += struct.pack("<HH", target, 0)
    return bytes(out)


IVT = _ivt()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitRecord:
    """One userspace MSR exit: which op caused it, what KVM said, and how userspace answered."""

    position: int  # of the op in the list given to `Probe.run`
    exit: MsrExit
    answer: MsrAnswer


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What happened to one op: its result, the value read (reads that completed), its exits."""

    position: int
    op: MsrAccess
    result: Result
    value: int | None
    exits: tuple[ExitRecord, ...]


Answer = Callable[[MsrExit], MsrAnswer]


def answer_gp(exit_: MsrExit) -> MsrAnswer:
    """Answer every userspace MSR exit with an error, so the guest gets #GP."""
    return ANSWER_GP


class Probe(Closing):
    """A VM with one vCPU set up to run the probe guest; made by `Probe.create`.

    Owns the VM: closing the probe (or leaving ``with``) closes VM, vCPU and memory.
    ``vm`` and ``vcpu`` stay available for anything between runs (a new filter,
    another exit mask, host MSR accesses).  ``guest_cpuid`` is the CPUID the guest
    really has (KVM_GET_CPUID2 after KVM_SET_CPUID2): KVM may rewrite what was set
    (PVM does; see docs/live.md).
    """

    def __init__(
        self, token: object, vm: Vm, vcpu: Vcpu, memory: GuestMemory,
        guest_cpuid: tuple[CpuidEntry, ...],
    ) -> None:
        if token is not _CREATE:
            raise TypeError("a Probe must be made by Probe.create(), not constructed directly")
        self.vm = vm
        self.vcpu = vcpu
        self.memory = memory
        self.guest_cpuid = guest_cpuid

    @classmethod
    def create(
        cls, kvm: Kvm, *, cpuid: Sequence[CpuidEntry] | None = None,
        exits: ExitReason | int = NO_EXITS, msr_filter: MsrFilter | None = None,
    ) -> Probe:
        """A new VM and vCPU: guest CPUID ``cpuid`` (default: all KVM supports), userspace exits
        enabled for ``exits`` (none by default), and ``msr_filter`` if given.
        """
        vm = kvm.create_vm()
        try:
            memory = vm.add_memory(0, MEMORY_BYTES)
            memory.write(0, IVT)
            memory.write(CODE_ADDR, PROGRAM.code)
            if exits:
                vm.enable_user_space_msr(exits)
            if msr_filter is not None:
                vm.set_msr_filter(msr_filter)
            vcpu = vm.create_vcpu(0)
            vcpu.set_cpuid(kvm.supported_cpuid() if cpuid is None else cpuid)
            guest_cpuid = vcpu.get_cpuid()
            sregs = vcpu.get_sregs()
            # Real mode with CS = 0 (reset has CS.base = 0xffff0000 for the BIOS entry).
            sregs.cs.base, sregs.cs.selector = 0, 0
            sregs.ss.base, sregs.ss.selector = 0, 0
            vcpu.set_sregs(sregs)
        except BaseException:
            vm.close()
            raise
        return cls(_CREATE, vm, vcpu, memory, guest_cpuid)

    def close(self) -> None:
        self.vm.close()

    def run(
        self, ops: Sequence[MsrAccess], *, answer: Answer = answer_gp,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    ) -> tuple[Observation, ...]:
        """Run ``ops`` in order: consecutive guest ops in one guest run (up to MAX_OPS_PER_RUN
        per KVM_RUN loop), host ops as KVM_GET_MSRS / KVM_SET_MSRS between runs.

        Every userspace MSR exit is answered by ``answer`` and recorded.  The whole call
        is bounded by ``time_limit_s`` (GuestTimeout); a guest that stops in any other
        way than its final HLT raises GuestFault or UnexpectedExit.
        """
        out: list[Observation] = []
        # An earlier run that raised may have left an exit half done: finish it first.
        self.vcpu.complete_pending()
        with self.vcpu.time_limit(time_limit_s):
            for start, batch in _batches(ops):
                if batch[0].initiator is Initiator.HOST:
                    out.extend(self._host(start + i, op) for i, op in enumerate(batch))
                else:
                    out.extend(self._guest(start, batch, answer))
        return tuple(out)

    def _host(self, position: int, op: MsrAccess) -> Observation:
        if op.access is Access.R:
            got = self.vcpu.get_msrs([op.msr])
            ok = got.processed == 1
            value = got.entries[0].data if ok else None
        else:
            ok = self.vcpu.set_msrs([MsrEntry(index=op.msr, data=op.value)]) == 1
            value = None
        return Observation(position=position, op=op, result=Result.OK if ok else Result.FAILED,
                           value=value, exits=())

    def _guest(self, start: int, batch: Sequence[MsrAccess], answer: Answer) -> Iterator[Observation]:
        buf = self.memory.buffer
        table = bytearray(RECORD.size * len(batch))
        for i, op in enumerate(batch):
            RECORD.pack_into(table, i * RECORD.size, op.msr,
                             0 if op.access is Access.R else 1, Status.NOT_RUN, op.value)
        buf[TABLE_ADDR: TABLE_ADDR + len(table)] = table
        regs = self.vcpu.get_regs()
        regs.rip, regs.rflags, regs.rsp, regs.rbp = CODE_ADDR, 0x2, STACK_TOP, len(batch)
        self.vcpu.set_regs(regs)

        exits: list[list[ExitRecord]] = [[] for _ in batch]
        cursor = 0
        status = struct.Struct("<H")
        vcpu = self.vcpu
        while True:
            exit_ = vcpu.run()
            if isinstance(exit_, _MSR_EXITS):
                # The op being executed is the last one whose status is no longer NOT_RUN.
                while cursor < len(batch) and status.unpack_from(
                        buf, TABLE_ADDR + cursor * RECORD.size + _STATUS_AT)[0]:
                    cursor += 1
                current = batch[cursor - 1] if cursor else None
                wanted = X86Rdmsr if current is not None and current.access is Access.R \
                    else X86Wrmsr
                if current is None:
                    raise UnexpectedExit(exit_, "the guest made it before running any op")
                if current.msr != exit_.index or not isinstance(exit_, wanted):
                    raise UnexpectedExit(exit_, f"op #{start + cursor - 1} is {current}")
                reply = answer(exit_)
                vcpu.answer_msr(reply)
                exits[cursor - 1].append(
                    ExitRecord(position=start + cursor - 1, exit=exit_, answer=reply))
            elif isinstance(exit_, Hlt):
                break
            elif isinstance(exit_, Io) and exit_.port == PORT_UNEXPECTED \
                    and exit_.direction is IoDirection.OUT:
                stub, ip, cs = struct.unpack_from("<HHH", buf, DIAG_ADDR)
                raise GuestFault((stub - PROGRAM.labels["stub0"]) // STUB_SIZE - 1, cs, ip)
            else:
                raise UnexpectedExit(exit_, "the probe guest only makes MSR exits and HLT")

        for i, (index, _kind, st, value) in enumerate(
                RECORD.iter_unpack(buf[TABLE_ADDR: TABLE_ADDR + len(table)])):
            op = batch[i]
            if st == Status.NOT_RUN or index != op.msr:
                raise UnexpectedExit(Hlt(), f"op #{start + i} was not run")
            result = Result.GP if st == Status.GP else Result.OK
            yield Observation(
                position=start + i, op=op, result=result,
                value=value if result is Result.OK and op.access is Access.R else None,
                exits=tuple(exits[i]),
            )


_CREATE = object()
_MSR_EXITS = (X86Rdmsr, X86Wrmsr)


def _batches(ops: Sequence[MsrAccess]) -> Iterator[tuple[int, Sequence[MsrAccess]]]:
    """Split ``ops`` into runs of one actor (guest runs at most MAX_OPS_PER_RUN long)."""
    start = 0
    while start < len(ops):
        actor = ops[start].initiator
        end = start + 1
        limit = start + MAX_OPS_PER_RUN if actor is Initiator.GUEST else len(ops)
        while end < len(ops) and end < limit and ops[end].initiator is actor:
            end += 1
        yield start, ops[start:end]
        start = end
