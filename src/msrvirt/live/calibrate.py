"""Measure what an MSR exit costs on this host's /dev/kvm, for `msrvirt calibrate`.

Two round trips, each the best of several rounds (the least disturbed one):

1. In-kernel MSR emulation: the guest loops ``wrmsr; dec ebp; jnz`` writing IA32_PAT's
   reset value (KVM intercepts PAT writes on VMX, SVM and PVM alike, checks the value
   and stores it; the memory types do not change), in one KVM_RUN; the same loop without
   the WRMSR is timed too, and the difference per iteration is the cost of one
   intercepted and emulated WRMSR.
2. Userspace MSR exit: the guest loops ``rdmsr; jmp`` over an MSR KVM does not know,
   with userspace exits enabled for UNKNOWN; each iteration is one KVM_RUN that exits to
   this process, which answers through `Vcpu.answer_msr`.  It includes the VMM's (here
   Python's) own work.

What this measures is the host's backend: on KVM with PVM (a software backend, no VMX)
it is PVM's trap and emulation path, not a VMX VM exit; the host string says which.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

from msrvirt.arch.kvm import ExitReason
from msrvirt.arch.msrs import index_of
from msrvirt.live.asm import Asm16, Program
from msrvirt.live.errors import UnexpectedExit
from msrvirt.live.exits import Hlt, MsrAnswer, X86Rdmsr
from msrvirt.live.fingerprint import BACKEND_MODULES, PROC_CPUINFO, cpu_model, kvm_modules
from msrvirt.live.kvm import Kvm, Vcpu
from msrvirt.live.probe import Probe

LOOP_ADDR = 0x4000  # after the probe program, below its op table (probe.py's layout)
PAT = index_of("IA32_PAT")
PAT_RESET = 0x0007040600070406  # the power-on value (SDM Vol. 3A, "PAT MSR")
UNKNOWN_MSR = 0x474F4F00  # no MSR: KVM sends it to userspace (the upstream selftest's)
DEFAULT_ITERATIONS = 20000
MAX_ITERATIONS = 0xFFFF_FFFF  # the loop counts down in EBP
DEFAULT_REPEATS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """Round-trip times measured here, with the host and how each was measured."""

    host: str  # CPU model, kernel, KVM backend
    cpu_mhz: float | None  # /proc/cpuinfo "cpu MHz", None where it says nothing
    in_kernel_ns: float
    in_kernel_how: str
    userspace_ns: float
    userspace_how: str


def _counted_loop(with_wrmsr: bool) -> Program:
    a = Asm16(LOOP_ADDR)
    a.label("again")
    if with_wrmsr:
        a.op(b"\x0f\x30", "wrmsr")
    a.op(b"\x66\x4d", "dec ebp")
    a.jump8(0x75, "again", "jne again")
    a.op(b"\xf4", "hlt")
    return a.build()


def _exit_loop() -> Program:
    a = Asm16(LOOP_ADDR)
    a.label("again")
    a.op(b"\x0f\x32", "rdmsr")
    a.jump8(0xEB, "again", "jmp again")
    return a.build()


def _start(probe: Probe, program: Program, *, msr: int, count: int = 0, value: int = 0) -> Vcpu:
    probe.memory.write(LOOP_ADDR, program.code)
    vcpu = probe.vcpu
    vcpu.complete_pending()  # an exit left pending would undo KVM_SET_REGS (api.rst)
    regs = vcpu.get_regs()
    regs.rip, regs.rflags, regs.rbp, regs.rcx = LOOP_ADDR, 0x2, count, msr
    regs.rax, regs.rdx = value & 0xFFFFFFFF, value >> 32
    vcpu.set_regs(regs)
    return vcpu


def _time_to_hlt(probe: Probe, program: Program, iterations: int) -> float:
    vcpu = _start(probe, program, msr=PAT, count=iterations, value=PAT_RESET)
    t = time.perf_counter()
    exit_ = vcpu.run()
    elapsed = time.perf_counter() - t
    if not isinstance(exit_, Hlt):
        raise UnexpectedExit(exit_, "the calibration loop only halts at its end")
    return elapsed


def _time_exits(probe: Probe, iterations: int) -> float:
    vcpu = _start(probe, _exit_loop(), msr=UNKNOWN_MSR)
    answer = MsrAnswer(value=0)
    run, reply = vcpu.run, vcpu.answer_msr
    first = run()  # the loop's first exit, outside the timing
    if not isinstance(first, X86Rdmsr):
        raise UnexpectedExit(first, "the exit loop only makes RDMSR exits")
    t = time.perf_counter()
    for _ in range(iterations):
        reply(answer)
        exit_ = run()
    elapsed = time.perf_counter() - t
    if not isinstance(exit_, X86Rdmsr):
        raise UnexpectedExit(exit_, "the exit loop only makes RDMSR exits")
    return elapsed


def cpu_mhz(path: str = PROC_CPUINFO) -> float | None:
    """The first "cpu MHz" of /proc/cpuinfo, None when there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "cpu MHz":
                    return float(value)
    except (OSError, ValueError):
        pass
    return None


def host_description() -> str:
    """'<CPU model>, Linux <release>, KVM on <backend>' for this host."""
    backends = [BACKEND_MODULES[m].value for m in kvm_modules()]
    backend = "/".join(backends) or "an unknown backend"
    return f"{cpu_model() or 'unknown CPU'}, Linux {platform.release()}, KVM on {backend}"


def calibrate(kvm: Kvm, *, iterations: int = DEFAULT_ITERATIONS,
              repeats: int = DEFAULT_REPEATS) -> Calibration:
    """Measure both round trips on ``kvm``; each the best of ``repeats`` rounds of ``iterations``."""
    with Probe.create(kvm) as probe:
        bare, loaded = _counted_loop(False), _counted_loop(True)
        _time_to_hlt(probe, loaded, 1000)  # warm up
        without = min(_time_to_hlt(probe, bare, iterations) for _ in range(repeats))
        with_ = min(_time_to_hlt(probe, loaded, iterations) for _ in range(repeats))
    with Probe.create(kvm, exits=ExitReason.UNKNOWN) as probe:
        _time_exits(probe, 1000)
        round_trip = min(_time_exits(probe, iterations) for _ in range(repeats))
    rounds = f"best of {repeats} x {iterations:,}"
    return Calibration(
        host=host_description(), cpu_mhz=cpu_mhz(),
        in_kernel_ns=max(with_ - without, 0.0) / iterations * 1e9,
        in_kernel_how="guest WRMSR IA32_PAT intercepted and emulated in the kernel:"
        f" (loop with WRMSR - loop without) per iteration, one KVM_RUN, {rounds}",
        userspace_ns=round_trip / iterations * 1e9,
        userspace_how="guest RDMSR of an unknown MSR exiting to this Python VMM and back"
        f" (Vcpu.run + answer_msr, the VMM's work included), {rounds}",
    )
