"""Benchmark the live layer on this host's /dev/kvm (a plain script, not a timed test).

    .venv/bin/python bench/bench_live.py [--exits N] [--repeats R]

1. One userspace MSR exit round trip (guest RDMSR of an MSR KVM does not know ->
   KVM_EXIT_X86_RDMSR -> answer -> KVM_RUN again), through `Vcpu.run` +
   `Vcpu.answer_msr`, against a minimal loop making the same ioctls directly
   (fcntl.ioctl on the vCPU fd, struct reads and writes on the mapped kvm_run).
   Both run the same guest; the best of R rounds of N exits is reported.
2. The same exits through `Probe.run` (op table, attribution, records), per exit.
3. In-kernel MSR ops per second: `Probe.run` of 60,000 RDMSRs KVM handles itself
   (one KVM_RUN), end to end and guest time only.
4. For scale: every index of both filter-bitmap ranges (2 x 8192), read and write,
   every access exiting to userspace or handled in the kernel, end to end.
"""

from __future__ import annotations

import argparse
import fcntl
import platform
import struct
import sys
import time
from collections.abc import Callable

from msrvirt.arch.cpuid import Feature
from msrvirt.arch.kvm import Access, ExitReason
from msrvirt.live.exits import ANSWER_GP, Exit, MsrAnswer
from msrvirt.live.fingerprint import cpu_model
from msrvirt.live.kvm import CpuidEntry, Kvm, Vcpu
from msrvirt.live.probe import CODE_ADDR, Probe
from msrvirt.live.uapi import KVM_RUN_EXIT_OFFSET, ExitKind, Ioctl
from msrvirt.policy.decide import MsrAccess

UNKNOWN_MSR = 0x474F4F00
EFER = 0xC0000080
# mov ecx, UNKNOWN_MSR ; rdmsr ; jmp back to the mov: one userspace exit per iteration.
LOOP = b"\x66\xb9" + UNKNOWN_MSR.to_bytes(4, "little") + b"\x0f\x32" + b"\xeb\xf6"


def no_fred(cpuid: tuple[CpuidEntry, ...]) -> tuple[CpuidEntry, ...]:
    bit = Feature.FRED.cpuid
    return tuple(
        CpuidEntry(function=e.function, index=e.index, flags=e.flags,
                   eax=e.eax & ~(1 << bit.bit), ebx=e.ebx, ecx=e.ecx, edx=e.edx)
        if e.key == (bit.leaf, bit.subleaf) else e
        for e in cpuid)


def start_loop(probe: Probe) -> Vcpu:
    probe.memory.write(CODE_ADDR, LOOP)
    vcpu = probe.vcpu
    regs = vcpu.get_regs()
    regs.rip, regs.rflags = CODE_ADDR, 0x2
    vcpu.set_regs(regs)
    return vcpu


def layer_loop(vcpu: Vcpu, n: int) -> float:
    answer = MsrAnswer(value=0x1234)
    run, reply = vcpu.run, vcpu.answer_msr
    t = time.perf_counter()
    for _ in range(n):
        reply(answer)
        exit_ = run()
    elapsed = time.perf_counter() - t
    assert exit_.index == UNKNOWN_MSR  # type: ignore[union-attr]
    return elapsed


def raw_loop(vcpu: Vcpu, n: int) -> float:
    fd, request = vcpu.fd, int(Ioctl.KVM_RUN)
    kvm_run = vcpu._map  # the mapped struct kvm_run
    head = struct.Struct("<I")  # exit_reason at 8
    msr = struct.Struct("<B7xIIQ")  # error, reason, index, data at 32
    answer = struct.Struct("<B7xIIQ")
    at = KVM_RUN_EXIT_OFFSET
    rdmsr = int(ExitKind.X86_RDMSR)
    t = time.perf_counter()
    for _ in range(n):
        answer.pack_into(kvm_run, at, 0, 0, 0, 0x1234)
        fcntl.ioctl(fd, request, 0)
        (kind,) = head.unpack_from(kvm_run, 8)
        _error, _reason, index, _data = msr.unpack_from(kvm_run, at)
    elapsed = time.perf_counter() - t
    assert kind == rdmsr and index == UNKNOWN_MSR
    return elapsed


def best(fn: Callable[[Vcpu, int], float], vcpu: Vcpu, n: int, repeats: int) -> float:
    return min(fn(vcpu, n) for _ in range(repeats)) / n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exits", type=int, default=20000, help="exits per round")
    parser.add_argument("--repeats", type=int, default=7, help="rounds (best is kept)")
    args = parser.parse_args(argv)

    with Kvm() as kvm:
        cpuid = no_fred(kvm.supported_cpuid())
        print(f"host: {cpu_model()}, Linux {platform.release()}, Python"
              f" {platform.python_version()}")

        with Probe.create(kvm, cpuid=cpuid, exits=ExitReason.UNKNOWN) as probe:
            vcpu = start_loop(probe)
            layer_loop(vcpu, 1000)  # warm up
            raw_loop(vcpu, 1000)
            layer, raw = [], []
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                layer.append(layer_loop(vcpu, args.exits) / args.exits)
                raw.append(raw_loop(vcpu, args.exits) / args.exits)
            lay, rw = min(layer), min(raw)
            print(f"1. userspace MSR exit round trip, best of {args.repeats} x {args.exits}:")
            print(f"   raw fcntl.ioctl loop   {rw * 1e6:7.2f} us")
            print(f"   Vcpu.run + answer_msr  {lay * 1e6:7.2f} us"
                  f"   overhead {100 * (lay - rw) / rw:+.1f}%")

        with Probe.create(kvm, cpuid=cpuid, exits=ExitReason.UNKNOWN) as probe:
            ops = [MsrAccess(msr=UNKNOWN_MSR, access=Access.R)] * args.exits
            probe.run(ops[:1000], answer=lambda e: ANSWER_GP)
            in_run = time_kvm_run(probe.vcpu)
            total = _timed(lambda: probe.run(ops))
            per, kernel = total / len(ops), in_run[0] / len(ops)
            print(f"2. Probe.run, every op a userspace exit: {per * 1e6:.2f} us per op,"
                  f" of which {kernel * 1e6:.2f} us in KVM_RUN (guest loop and exit),"
                  f" {(per - kernel) * 1e6:.2f} us in Python")

        with Probe.create(kvm, cpuid=cpuid) as probe:
            ops = [MsrAccess(msr=EFER, access=Access.R)] * 60000
            in_run = time_kvm_run(probe.vcpu)
            total = _timed(lambda: probe.run(ops))
            print(f"3. in-kernel RDMSR (EFER), 60000 ops, {probe.vcpu.runs} KVM_RUN:"
                  f" {len(ops) / total:,.0f} ops/s end to end,"
                  f" {len(ops) / in_run[0]:,.0f} ops/s in KVM_RUN")

        sweep = [MsrAccess(msr=base + i, access=a)
                 for base in (0, 0xC0000000) for i in range(0x2000)
                 for a in (Access.R, Access.W)]
        with Probe.create(kvm, cpuid=cpuid, exits=ExitReason.INVAL | ExitReason.UNKNOWN
                          | ExitReason.FILTER) as probe:
            t = time.perf_counter()
            obs = probe.run(sweep)
            elapsed = time.perf_counter() - t
            exits = sum(len(o.exits) for o in obs)
            print(f"4. sweep of {len(sweep)} ops ({exits} userspace exits, the rest in the"
                  f" kernel): {elapsed:.3f} s (Probe.create excluded)")
    return 0


def time_kvm_run(vcpu: Vcpu) -> list[float]:
    """Wrap ``vcpu.run`` so the returned cell accumulates the seconds spent in it."""
    spent = [0.0]
    inner = vcpu.run

    def timed_run() -> Exit:
        t = time.perf_counter()
        try:
            return inner()
        finally:
            spent[0] += time.perf_counter() - t

    vcpu.run = timed_run  # type: ignore[method-assign]
    return spent


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
