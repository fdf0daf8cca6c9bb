"""The evidence kinds msrvirt computes, each a producer from a `Need` and the `Inputs` to an
`Evidence`, registered with its parameters and expectations in `SPECS`.

A producer states what it found in a sentence built from the results (numbers formatted
from the values it computed, also returned as ``figures``), and whether that result is
the one the need expects (supports), another (contradicts), or, without an expectation,
only informs.  Adding a kind means adding a producer here (and its entry in `SPECS`); the
judging function (review/judge.py) does not change.  docs/review.md lists every kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from msrvirt.arch.cpuid import feature
from msrvirt.arch.hosts import host
from msrvirt.arch.kvm import Access
from msrvirt.arch.msrs import display_name, resolve_index
from msrvirt.arch.nested import MergeList, merge_list
from msrvirt.arch.vmcs import GUEST_FIELDS, HOST_FIELDS
from msrvirt.check.explore import DesignCheck, Result
from msrvirt.check.invariants import INVARIANTS
from msrvirt.cost.model import MsrCost, PolicyCost
from msrvirt.cost.nested import estimate_nested, kvm_nested
from msrvirt.cost.units import SLOT_OF, enabled_step, warm_state
from msrvirt.errors import FileFormatError, MsrvirtError
from msrvirt.machine.designs import Verdict, design
from msrvirt.machine.hostconf import host_config
from msrvirt.machine.model import (
    CACHE,
    HW,
    MODE_OF,
    TASK_OF,
    VCPU_TASK,
    Ev,
    Event,
    Machine,
    Mode,
    Slot,
    State,
    guest_value,
    is_guest_value,
    machine,
    stack_top,
    task_name,
    value_name,
)
from msrvirt.policy.decide import Initiator, MsrAccess, decide, explain_msr
from msrvirt.policy.intercepts import compute_intercepts
from msrvirt.policy.nested import L2Outcome, decide_l2
from msrvirt.policy.policies import policy
from msrvirt.policy.scenario import Scenario
from msrvirt.report.check import counterexample_text
from msrvirt.review.evidence import PLANTED_DEPTH, Inputs
from msrvirt.review.table import ORIGIN, Claim, EvidenceKind, Need
from msrvirt.review.verdicts import Bearing, Evidence

K = EvidenceKind
Producer = Callable[[Need, Inputs], Evidence]


# -- prose helpers ---------------------------------------------------------------------------

def num(x: float) -> str:
    """A rate as prose: 100,000 / 12.5 / 0.000556 / 0."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.1f}"
    return f"{x:.3g}"


def _short(index: int) -> str:
    return display_name(index).removeprefix("IA32_")


def names(indices: Sequence[int]) -> str:
    """'FRED_RSP1-3, FRED_STKLVLS and FRED_CONFIG': consecutive numbered names grouped."""
    groups: list[tuple[str, list[int]] | str] = []
    for index in indices:
        name = _short(index)
        m = re.fullmatch(r"(.*?)(\d+)", name)
        last = groups[-1] if groups else None
        if m and isinstance(last, tuple) and last[0] == m[1] and last[1][-1] + 1 == int(m[2]):
            last[1].append(int(m[2]))
        else:
            groups.append((m[1], [int(m[2])]) if m else name)
    parts = [g if isinstance(g, str) else
             (f"{g[0]}{g[1][0]}" if len(g[1]) == 1 else f"{g[0]}{g[1][0]}-{g[1][-1]}")
             for g in groups]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plural(indices: Sequence[int], one: str, many: str) -> str:
    return one if len(indices) == 1 else many


def _evidence(need: Need, ok: bool | None, summary: str, detail: Sequence[str] = (),
              figures: Sequence[tuple[str, float]] = ()) -> Evidence:
    if need.expect is None or ok is None:
        bearing = Bearing.INFORMS
    else:
        bearing = Bearing.SUPPORTS if ok else Bearing.CONTRADICTS
    return Evidence(kind=need.kind, scope=need.scope, bearing=bearing, summary=summary,
                    detail=tuple(detail), figures=tuple(figures))


def _msrs(need: Need, key: str = "msrs") -> tuple[int, ...]:
    return tuple(resolve_index(n) for n in need.get(key))


def _scenario(need: Need, policy_name: str | None = None) -> Scenario:
    h = host(need.get("host", "intel-fred"))
    drop = frozenset(feature(f) for f in need.get("drop", ()))
    return Scenario(host=h, guest=h.features - drop,
                    policy=policy(policy_name or need.get("policy", "fred-v9")))


def _guest_text(s: Scenario) -> str:
    missing = sorted(f.value.upper() for f in s.host.features - s.guest)
    return "with every host feature" if not missing else "without " + " and ".join(missing)


# -- architecture and policy -----------------------------------------------------------------

def vmcs_fields(need: Need, inputs: Inputs) -> Evidence:
    """Whether each MSR has a VMCS guest and host field (arch/vmcs.py); expect both | none."""
    msrs = _msrs(need)
    both: list[int] = []
    neither: list[int] = []
    detail = []
    for m in msrs:
        g, h = GUEST_FIELDS.get(display_name(m)), HOST_FIELDS.get(display_name(m))
        (both if g and h else neither).append(m)
        detail.append(f"{display_name(m)}: guest field "
                      + (f"{g.name} ({g.encoding:#06x})" if g else "none") + ", host field "
                      + (f"{h.name} ({h.encoding:#06x})" if h else "none"))
    parts = []
    if both:
        parts.append(f"{names(both)} {_plural(both, 'has', 'each have')} a VMCS guest and host"
                     " field")
    if neither:
        parts.append(f"{names(neither)} {_plural(neither, 'has', 'have')} no VMCS guest or host"
                     " field")
    ok = not neither if need.expect == "both" else not both
    return _evidence(need, ok, "; ".join(parts), detail)


def bitmap(need: Need, inputs: Inputs) -> Evidence:
    """A policy's decisions for guest RDMSR/WRMSR of the MSRs; expect passthrough | intercept."""
    s = _scenario(need)
    ints = compute_intercepts(s)
    groups: dict[tuple[bool, str], list[int]] = {}
    detail = []
    for m in _msrs(need):
        rd, wr = explain_msr(s, m, ints)
        passed = not rd.intercept and not wr.intercept
        groups.setdefault((passed, rd.summary), []).append(m)
        detail.append(f"{display_name(m)} ({m:#x}): read {rd.outcome.value}, write"
                      f" {wr.outcome.value} -- {rd.summary}")
    found = "; ".join(f"{names(ms)} {'passed through' if p else 'intercepted'} ({why})"
                      for (p, why), ms in groups.items())
    want = need.expect == "passthrough"
    ok = all(p == want for p, _ in groups)
    return _evidence(need, ok, f"{s.policy.name} on {s.host.name}, guest {_guest_text(s)}:"
                     f" {found}", detail)


def bitmap_diff(need: Need, inputs: Inputs) -> Evidence:
    """The MSRs whose bits differ between two policies on the hosts and guests given;
    expect only (every difference is among ``only``; ``unchanged`` MSRs are named)."""
    allowed = set(_msrs(need, "only"))
    changed: set[int] = set()
    detail = []
    hosts, drops = need.get("hosts"), need.get("drops")
    for host_name in hosts:
        h = host(host_name)
        for drop in drops:
            guest = h.features - frozenset(feature(f) for f in drop)
            a, b = (compute_intercepts(Scenario(host=h, guest=guest, policy=policy(p))).bitmap
                    for p in (need.get("from"), need.get("to")))
            assert a is not None and b is not None  # both policies use a bitmap on these hosts
            diff = sorted({row.msr for row in a.diff(b)})
            changed.update(diff)
            guest_text = "every host feature" if not drop else "-" + ",-".join(drop)
            detail.append(f"{host_name}, guest {guest_text}: "
                          + (names(diff) if diff else "no difference"))
    outside = sorted(changed - allowed)
    summary = (f"{need.get('from')} -> {need.get('to')} on {len(hosts)} hosts x {len(drops)}"
               f" guest CPUIDs changes " + (names(sorted(changed)) if changed else "nothing"))
    if outside:
        summary += f", among them {names(outside)}"
    else:
        summary += " and nothing else"
    watched = list(_msrs(need, "unchanged")) if need.get("unchanged") else []
    if watched:
        moved = [m for m in watched if m in changed]
        summary += (f"; {names(moved)} changed" if moved else
                    f"; {names(watched)} {_plural(watched, 'keeps its', 'keep their')} bits")
        outside += moved
    return _evidence(need, not outside, summary, detail)


def _passes_through(s: Scenario, msrs: Sequence[int]) -> bool:
    """Whether the guest's own reads and writes of every MSR of ``msrs`` skip KVM under ``s``."""
    ints = compute_intercepts(s)
    return not any(d.intercept for m in msrs for d in explain_msr(s, m, ints))


def access(need: Need, inputs: Inputs) -> Evidence:
    """The decision for one access to each MSR under each policy; expect an outcome, or
    'not-OUTCOME'."""
    acc = Access[need.get("access")]
    initiator = Initiator(need.get("initiator", "guest"))
    outcomes: dict[str, list[str]] = {}
    detail = []
    policies = need.get("policies", (need.get("policy", "fred-v9"),))
    msrs = _msrs(need)
    scenarios = {pol: _scenario(need, pol) for pol in policies}
    for pol, s in scenarios.items():
        for m in msrs:
            d = decide(s, MsrAccess(m, acc, int(need.get("value", 0)), initiator))
            outcomes.setdefault(d.outcome.value, []).append(f"{pol} {_short(m)}")
            detail.append(f"{pol}: {display_name(m)}: {d.outcome.value} -- {' -> '.join(d.reasons)}")
    verb = "read" if acc is Access.R else "write"
    who = (f"a guest {'RDMSR' if acc is Access.R else 'WRMSR'}" if initiator is Initiator.GUEST
           else f"a host-initiated {verb} (KVM_{'GET' if acc is Access.R else 'SET'}_MSRS)")
    s0 = scenarios[policies[0]]
    what = (" in every case" if len(outcomes) == 1 else
            " in " + ", ".join(f"{len(v)} cases" for v in outcomes.values()))
    summary = (f"{who} of {names(msrs)} on {s0.host.name}, guest {_guest_text(s0)},"
               f" under {', '.join(policies)}: {' / '.join(outcomes)}{what}")
    if initiator is Initiator.HOST:
        # Whether the guest's own accesses skip KVM under some of these policies: then the
        # emulation the host-initiated ones need exists whatever the bitmap says.
        passing = [pol for pol, s in scenarios.items() if _passes_through(s, msrs)]
        if passing:
            summary += (f", also under {', '.join(passing)}, which passes the guest's own"
                        " accesses through")
    expect = need.expect or ""
    negate = expect.startswith("not-")
    target = expect.removeprefix("not-")
    ok = (target not in outcomes) if negate else set(outcomes) == {target}
    return _evidence(need, ok, summary, detail)


# -- the machine --------------------------------------------------------------------------------

_POINTS = {
    "host-exception": "right after a VM exit, a host NMI/#DB (ring 0)",
    "host-user-event": "after KVM_RUN returns, a host event from user mode",
    "guest-ring0": "a guest NMI/#DB in its kernel",
    "guest-ring3": "a guest event from its user mode",
}
_EVENT_KIND = {"host-exception": Ev.HOST_EXCEPTION, "host-user-event": Ev.HOST_USER_EVENT,
               "guest-ring0": Ev.GUEST_EVENT_RING0, "guest-ring3": Ev.GUEST_EVENT_RING3}
# The machine keeps one of RSP1-3 and of SSP1-3 (docs/check.md, abstraction 1).
_SLOT_PROSE = {Slot.RSP1: "FRED_RSP1-3", Slot.SSP1: "FRED_SSP1-3"}


def _slot_text(slot: Slot) -> str:
    return _SLOT_PROSE.get(slot, _short(slot.msr))


def _value_text(v: int) -> str:
    return f"{value_name(v)}, the guest's" if is_guest_value(v) else value_name(v)


def _run_to(m: Machine, shstk: bool, steps: Sequence[Ev]) -> State:
    """The warm state (guest kernel running on CPU 0), then ``steps`` on CPU 0."""
    s = warm_state(m, shstk)
    for kind in steps:
        s = enabled_step(m, s, Event(kind=kind, cpu=0))
    return s


def _guest_shstk(need: Need) -> bool:
    return bool(need.get("guest", "shstk") == "shstk")


def consumes(need: Need, inputs: Inputs) -> Evidence:
    """Which MSRs an event delivery consumes in the machine; expect uses | never."""
    event = need.get("event")
    m = machine(design(need.get("design", "v9")))
    shstk = _guest_shstk(need)
    steps = {"host-exception": (Ev.VM_EXIT,), "host-user-event": (Ev.VM_EXIT, Ev.KVM_RUN_RETURN),
             "guest-ring0": (), "guest-ring3": (Ev.GUEST_ERETU,)}[event]
    s = _run_to(m, shstk, steps)
    obs = m.observe(s, Event(kind=_EVENT_KIND[event], cpu=0))
    assert obs is not None
    used = dict(obs.values)
    asked = tuple(dict.fromkeys(SLOT_OF[i] for i in _msrs(need)))
    held = {slot: m.get(s, HW[0, slot]) for slot in asked}
    summary = (f"{_POINTS[event]} ({m.design.name}, guest {'with' if shstk else 'without'}"
               " shadow stacks) consumes "
               + ", ".join(f"{_slot_text(slot)} ({_value_text(v)})" for slot, v in used.items()))
    unused = [slot for slot in asked if slot not in used]
    if unused:
        summary += "; not " + ", ".join(f"{_slot_text(slot)} ({_value_text(held[slot])})"
                                        for slot in unused)
    ok = not unused if need.expect == "uses" else all(slot in unused for slot in asked)
    return _evidence(need, ok, summary)


_STATE_POINTS = {
    "after-vm-exit": "after the guest writes it and a VM exit follows",
    "after-preempt": "after the guest writes it and the vCPU thread is preempted (vCPU put,"
                     " the other task's exit to user mode)",
    "after-migrate": "after the guest writes it, the vCPU thread is preempted on CPU 0 and"
                     " resumed on CPU 1, and the guest runs again",
}


def _preempt(m: Machine, s: State, cpu: int) -> State:
    """The vCPU thread preempted on ``cpu`` by the lowest-numbered task not running."""
    running = {m.get(s, TASK_OF[c]) for c in range(m.bounds.cpus)}
    other = min(t for t in range(m.bounds.tasks) if t not in running and t != VCPU_TASK)
    return enabled_step(m, s, Event(kind=Ev.CONTEXT_SWITCH, cpu=cpu, task=other))


def machine_state(need: Need, inputs: Inputs) -> Evidence:
    """An MSR's value at a point of a run of the machine, on the CPU the vCPU thread last ran
    on; expect guest-value | host-value.  For FRED_RSP0 it also states the rsp0 cache and the
    task's stack top."""
    m = machine(design(need.get("design", "v9")))
    slot = SLOT_OF[resolve_index(need.get("msr"))]
    s = warm_state(m, _guest_shstk(need))
    s = enabled_step(m, s, Event(kind=Ev.GUEST_WRMSR, cpu=0, slot=slot, value=guest_value(1)))
    if m.get(s, MODE_OF[0]) == Mode.KVM:
        s = enabled_step(m, s, Event(kind=Ev.VM_ENTRY, cpu=0))  # KVM emulated it: resume
    at = need.get("at")
    s = enabled_step(m, s, Event(kind=Ev.VM_EXIT, cpu=0))
    cpu = 0
    if at in ("after-preempt", "after-migrate"):
        s = _preempt(m, s, 0)
    if at == "after-migrate":
        cpu = 1
        s = enabled_step(m, s, Event(kind=Ev.CONTEXT_SWITCH, cpu=cpu, task=VCPU_TASK))
        s = enabled_step(m, s, Event(kind=Ev.VM_ENTRY, cpu=cpu))
    v = m.get(s, HW[cpu, slot])
    summary = (f"{_STATE_POINTS[at]} ({m.design.name}, guest"
               f" {'with' if _guest_shstk(need) else 'without'} shadow stacks): CPU {cpu}'s"
               f" {_slot_text(slot)} holds {_value_text(v)}")
    if slot is Slot.RSP0:
        task = m.get(s, TASK_OF[cpu])
        summary += (f", the fred_rsp0 cache {value_name(m.get(s, CACHE[cpu]))};"
                    f" the task running there is {task_name(task)}, whose stack top is"
                    f" {value_name(stack_top(task))}")
    ok = is_guest_value(v) == (need.expect == "guest-value")
    return _evidence(need, ok, summary)


def _broken(res: Result) -> str:
    """'host-safety in 4 events, ...': each invariant a check breaks, with its shortest
    counterexample's length."""
    return ", ".join(f"{inv} in {len(cx)} events" for inv, cx in res.counterexamples.items())


def _verdict(need: Need, chk: DesignCheck, what: str, *, first: bool = False) -> Evidence:
    """The checker's verdict on ``chk`` as evidence: ``what`` keeps every invariant, or breaks
    some (with the first counterexample's message if ``first``); expect holds | fails
    (breaking ``breaks``)."""
    res = chk.result
    scope = (f"{res.states:,} states, exhaustive" if res.complete
             else f"{res.states:,} states within {PLANTED_DEPTH} events")
    figures: list[tuple[str, float]] = [("states", res.states)]
    if res.verdict is Verdict.HOLDS:
        summary = f"{what} keeps every invariant ({scope})"
        detail: Sequence[str] = ()
    else:
        broken = _broken(res)
        figures += [(f"events {inv}", len(cx)) for inv, cx in res.counterexamples.items()]
        summary = f"{what} breaks {broken} ({scope})"
        # The shortest counterexample of the invariants the need names, else of any.
        named = [res.counterexamples[i] for i in need.get("breaks", ()) if i in res.counterexamples]
        cx = min(named, key=len) if named else res.first_counterexample()
        if first and cx is not None:
            summary += f": {cx.message}"
        detail = counterexample_text(chk)
    if need.expect == "holds":
        ok = res.verdict is Verdict.HOLDS
    else:
        ok = res.verdict is Verdict.FAILS and set(need.get("breaks", ())) <= set(res.counterexamples)
    return _evidence(need, ok, summary, detail, figures)


def check(need: Need, inputs: Inputs) -> Evidence:
    """The checker's verdict on a design; expect holds | fails (breaking ``breaks``)."""
    name = need.get("design")
    chk = inputs.checks[name]
    return _verdict(need, chk, name if chk.result.verdict is Verdict.HOLDS
                    else f"{name} ({chk.design.summary})")


def host_design(need: Need) -> str:
    """The name of the design a host-check need checks: ``DESIGN@VARIANT`` (design v9 unless
    the need names another)."""
    return f"{need.get('design', 'v9')}@{need.get('variant')}"


def _host_design_known(need: Need) -> str | None:
    """Nothing, if the host-check's design exists on its variant (a design on the default
    host); else `design` raises, naming the pair."""
    design(host_design(need))
    return None


def host_check(need: Need, inputs: Inputs) -> Evidence:
    """The checker's verdict on a design (v9 unless ``design`` names another) run on the host
    configuration ``variant`` (machine/hostconf.py); expect holds | fails (breaking
    ``breaks``).  A failure states the shortest counterexample's message."""
    chk = inputs.checks[host_design(need)]
    base, host = need.get("design", "v9"), chk.design.host
    return _verdict(need, chk, f"{base} on {host.name} ({host.summary})", first=True)


# -- the cost model ------------------------------------------------------------------------------

def _cost_row(c: PolicyCost, msr: int) -> MsrCost:
    for row in c.rows:
        if row.msr == msr:
            return row
    raise KeyError(msr)


def _costs(need: Need, inputs: Inputs) -> tuple[dict[str, PolicyCost], str]:
    shstk = _guest_shstk(need)
    w = inputs.workload
    text = (f"{w.name} at {num(w.guest_context_switches.per_second)} context switches/s, guest"
            f" {'with' if shstk else 'without'} shadow stacks")
    return (inputs.costs if shstk else inputs.costs_fred_only), text


def writes(need: Need, inputs: Inputs) -> Evidence:
    """How often the workload's guest writes each MSR (every guest WRMSR, passed through or
    not); expect per-switch (at least once per guest context switch) | rare (under 1/s)."""
    table, wl = _costs(need, inputs)
    per_switch = inputs.workload.guest_context_switches.per_second
    figures: list[tuple[str, float]] = []
    groups: dict[tuple[float, str, str], list[int]] = {}
    classes = set()
    for m in _msrs(need):
        row = _cost_row(table["fred-v9"], m)
        rate = row.exits_per_s + row.direct_per_s
        hot = _cost_row(table["intercept-all"], m)
        cls = "per-switch" if rate >= per_switch else "rare" if rate < 1 else "occasional"
        classes.add(cls)
        by = ", ".join(unit for unit, _ in hot.exits_by_event)
        text = {"per-switch": "at least once per context switch",
                "rare": "under once a second" if rate else "never written",
                "occasional": "from 1/s to once per switch"}[cls]
        if by:
            text += f", from {by}"
        if cls == "per-switch":
            text += f"; intercepted, {num(hot.exits_per_s)} exits/s, {hot.cpu_percent:.2f}% of a CPU"
        groups.setdefault((rate, text, cls), []).append(m)
        figures += [(f"{display_name(m)} writes/s", rate),
                    (f"{display_name(m)} intercepted cpu%", hot.cpu_percent)]
    found = "; ".join(f"{names(ms)} {num(rate)} writes/s{' each' if len(ms) > 1 else ''} ({text})"
                      for (rate, text, _), ms in groups.items())
    return _evidence(need, classes == {need.expect}, f"{wl}: {found}", (), figures)


def exits_delta(need: Need, inputs: Inputs) -> Evidence:
    """The exits/s of policy ``to`` against ``from``; expect rare (they differ by under 1/s)
    | no-more (``to`` exits no more often)."""
    table, wl = _costs(need, inputs)
    a, b = table[need.get("from")], table[need.get("to")]
    delta = b.exits_per_s - a.exits_per_s
    change = ("the same" if delta == 0 else
              f"{num(abs(delta))} {'more' if delta > 0 else 'fewer'} exits/s"
              f" ({inputs.exit_costs.cpu_percent(abs(delta)):.2g}% of a CPU)")
    summary = (f"{wl}: {a.policy} {num(a.exits_per_s)} exits/s, {b.policy}"
               f" {num(b.exits_per_s)} exits/s: {b.policy} takes {change}")
    ok = abs(delta) < 1 if need.expect == "rare" else delta <= 0
    return _evidence(need, ok, summary, (),
                     ((f"{a.policy} exits/s", a.exits_per_s), (f"{b.policy} exits/s", b.exits_per_s)))


# -- the nested model -------------------------------------------------------------------------------

_WHERE = {L2Outcome.PASSTHROUGH: "run on the CPU", L2Outcome.EMULATED: "exit to L0, which handles"
          " them on vmcs02 without L1", L2Outcome.REFLECTED: "are reflected to L1",
          L2Outcome.GP: "get #GP", L2Outcome.EXIT: "exit to L0's userspace"}


def nested_design(merge: str) -> str:
    """The nested design that merges with list ``merge`` (machine/designs.py)."""
    return f"nested-{merge}"


def _has(m: MergeList, msrs: Sequence[int]) -> bool:
    return all((msr, a) in m.merged for msr in msrs for a in (Access.R, Access.W))


def _l2_outcomes(inputs: Inputs, m: MergeList, msrs: Sequence[int]) -> str:
    """Where L2's RDMSR and WRMSR of ``msrs`` end under ``m``, for a KVM L1 and a FRED L2."""
    n = kvm_nested(inputs.workload, m)
    groups: dict[str, list[int]] = {}
    for msr in msrs:
        ends = {decide_l2(n, MsrAccess(msr, a, 0)).outcome for a in (Access.R, Access.W)}
        groups.setdefault(" / ".join(_WHERE[o] for o in sorted(ends)), []).append(msr)
    return "; ".join(f"L2's accesses to {names(ms)} {where}" for where, ms in groups.items())


def nested_state(need: Need, inputs: Inputs) -> Evidence:
    """The nested designs' verdicts under each merge list, and where L2's accesses to the
    MSRs end; expect needed (a list without the MSRs breaks an invariant that the lists
    with them keep) | not-needed."""
    msrs = _msrs(need)
    found, figures = [], []
    needed_by: list[str] = []
    with_them_hold = True
    for name in need.get("merges"):
        m = merge_list(name)
        res = inputs.checks[nested_design(name)].result
        scope = f"{res.states:,} states, exhaustive" if res.complete else f"{res.states:,} states"
        figures.append((f"{name} states", res.states))
        if res.verdict is Verdict.HOLDS:
            verdict = f"keeps every nested invariant ({scope})"
        else:
            verdict = f"breaks {_broken(res)} ({scope})"
            if not _has(m, msrs):
                needed_by.append(name)
        if _has(m, msrs):
            with_them_hold &= res.verdict is Verdict.HOLDS
        found.append(f"merge list {name} {verdict}: {_l2_outcomes(inputs, m, msrs)}")
    needed = bool(needed_by) and with_them_hold
    summary = "; ".join(found) + (
        f"; so merging {names(msrs)} is needed for correctness (without them:"
        f" {', '.join(needed_by)})" if needed else
        f"; so merging {names(msrs)} is not needed for correctness")
    return _evidence(need, needed == (need.expect == "needed"), summary, (), figures)


def nested_speed(need: Need, inputs: Inputs) -> Evidence:
    """L2's exits to L0 under merge list ``without`` and under ``with``, for the review's
    workload run by L2 under a KVM L1; expect needed (the second saves at least one exit a
    second) | not-needed."""
    w = inputs.workload
    lists = [merge_list(need.get(key)) for key in ("without", "with")]
    a, b = (estimate_nested(w, kvm_nested(w, m), inputs.exit_costs) for m in lists)
    added = sorted({msr for msr, _ in lists[1].merged - lists[0].merged})
    saved = a.l0_exits_per_s - b.l0_exits_per_s
    rows = {r.msr: r for r in a.rows}
    why = ", ".join(sorted({unit for msr in added for unit, _ in rows[msr].exits_by_event}))
    summary = (f"{w.name} at {num(w.guest_context_switches.per_second)} context switches/s, run"
               f" by L2 under L1 {a.l1}: {a.merge} {num(a.l0_exits_per_s)} exits to L0/s"
               f" ({a.cpu_percent:.2g}% of a CPU), {b.merge} {num(b.l0_exits_per_s)}/s: merging"
               f" {names(added)} saves {num(saved)} exits/s" + (f" (its writes: {why})" if why else ""))
    detail = [f"{r.name}: {num(r.writes_per_s)} writes/s, {a.merge} {r.outcome.value},"
              f" {num(r.l0_exits_per_s)} exits/s" for r in a.rows if r.msr in added]
    figures = ((f"{a.merge} exits/s", a.l0_exits_per_s), (f"{b.merge} exits/s", b.l0_exits_per_s),
               ("saved exits/s", saved))
    return _evidence(need, (saved >= 1) == (need.expect == "needed"), summary, detail, figures)


_ASPECT_PARAMS = {"state": frozenset({"merges", "msrs"}), "speed": frozenset({"without", "with"})}


def _nested_params(need: Need) -> str | None:
    """What a nested need lacks or has too many of, for its aspect."""
    want = _ASPECT_PARAMS[need.get("aspect")] | {"aspect"}
    got = need.param_names
    return None if got == want else f"aspect {need.get('aspect')} takes {sorted(want)}"


def nested(need: Need, inputs: Inputs) -> Evidence:
    """The nested VMX model: ``aspect`` state (the checker on the nested designs) or speed
    (the nested cost model)."""
    return nested_state(need, inputs) if need.get("aspect") == "state" else nested_speed(need, inputs)


# -- the real kernel, and cited facts ---------------------------------------------------------------

def conformance(need: Need, inputs: Inputs) -> Evidence:
    """The built-in corpus on this machine's /dev/kvm against the model; expect agrees.
    ``part``: full (operations predicted in full), filter (only the filter decision) or all."""
    c = inputs.conformance
    if c is None:
        return Evidence(kind=need.kind, scope=need.scope, bearing=Bearing.PENDING,
                        summary="/dev/kvm was not used (--no-live, or not accessible): running"
                        " msrvirt review on a KVM host decides it")
    part = need.get("part", "all")
    where = f"on {c.host}"
    if part == "full":
        ops, bad = c.full_scope, c.full_scope_disagreements
        summary = f"{ops:,} operations predicted at full scope (result, exit reason, value) {where}"
    elif part == "filter":
        ops, bad = c.filter_only, c.disagreements - c.full_scope_disagreements
        summary = (f"{ops:,} operations checked only for the filter decision {where}" if ops else
                   f"no operation is checked only for the filter decision {where}: every one"
                   " is predicted at full scope")
    else:
        ops, bad = c.operations, c.disagreements
        summary = (f"{len(c.scenarios)} scenarios, {ops:,} operations {where} ({c.full_scope:,}"
                   f" at full scope, {c.filter_only:,} for the filter decision only)")
    if ops:
        summary += f": {bad:,} disagree"
    detail = [f"{s.scenario}: {s.operations:,} operations, {s.full:,} at full scope,"
              f" {s.disagree:,} disagree" for s in c.scenarios]
    return _evidence(need, bad == 0, summary, detail, (("operations", ops), ("disagreements", bad)))


def source(need: Need, inputs: Inputs) -> Evidence:
    """A cited fact of the kernel source, the patch or msrvirt's model; expect supports |
    contradicts (what the fact does to the claim's scope), or nothing (it informs)."""
    return _evidence(need, need.expect == "supports", f"{need.get('says')} ({need.get('cite')})")


# -- the registry -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """A computed kind: its producer, parameters and expectations."""

    produce: Producer
    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    expects: frozenset[str] = frozenset()
    consistent: Callable[[Need], str | None] | None = None  # what else is wrong, if anything


def _spec(produce: Producer, required: str, optional: str = "", expects: str = "",
          consistent: Callable[[Need], str | None] | None = None) -> Spec:
    return Spec(produce=produce, required=frozenset(required.split()),
                optional=frozenset(optional.split()), expects=frozenset(expects.split()),
                consistent=consistent)


_OUTCOMES = "passthrough emulated gp exit rejected"
SPECS: dict[EvidenceKind, Spec] = {
    K.VMCS_FIELDS: _spec(vmcs_fields, "msrs", expects="both none"),
    K.BITMAP: _spec(bitmap, "msrs", "host drop policy", "passthrough intercept"),
    K.BITMAP_DIFF: _spec(bitmap_diff, "from to hosts drops only", "unchanged", "only"),
    K.ACCESS: _spec(access, "msrs access", "host drop policy policies initiator value",
                    _OUTCOMES + " " + " ".join(f"not-{o}" for o in _OUTCOMES.split())),
    K.CONSUMES: _spec(consumes, "event msrs", "guest design", "uses never"),
    K.MACHINE_STATE: _spec(machine_state, "at msr", "guest design", "guest-value host-value"),
    K.CHECK: _spec(check, "design", "breaks", "holds fails"),
    K.HOST_CHECK: _spec(host_check, "variant", "design breaks", "holds fails",
                        _host_design_known),
    K.WRITES: _spec(writes, "msrs", "guest", "per-switch rare"),
    K.EXITS_DELTA: _spec(exits_delta, "from to", "guest", "rare no-more"),
    K.CONFORMANCE: _spec(conformance, "", "part", "agrees"),
    K.SOURCE: _spec(source, "says cite", expects="supports contradicts"),
    K.NESTED: _spec(nested, "aspect", "merges msrs without with", "needed not-needed",
                    _nested_params),
}


# -- checking the table against the kinds ----------------------------------------------------------

def _is_strs(v: Any) -> bool:
    return isinstance(v, tuple) and all(isinstance(x, str) for x in v)


# Parameters naming things: a list of them, or one, and how each name is looked up (each
# lookup raises an MsrvirtError naming a bad one).
_NAME_LISTS: dict[str, tuple[str, Callable[[str], object]]] = {
    "msrs": ("MSR names", resolve_index), "only": ("MSR names", resolve_index),
    "unchanged": ("MSR names", resolve_index), "hosts": ("host names", host),
    "policies": ("policy names", policy), "drop": ("CPUID features", feature),
    "merges": ("merge list names", merge_list),
}
_NAMES: dict[str, Callable[[str], object]] = {
    "msr": resolve_index, "host": host, "policy": policy, "from": policy, "to": policy,
    "design": design, "variant": host_config, "without": merge_list, "with": merge_list,
}
# Parameters that take one of a few words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "event": tuple(_POINTS), "at": tuple(_STATE_POINTS), "guest": ("shstk", "fred"),
    "access": ("R", "W"), "initiator": ("guest", "host"), "part": ("full", "filter", "all"),
    "aspect": ("state", "speed"),
}


def _check_value(name: str, value: Any) -> None:
    """Raise (ValueError or an MsrvirtError) if a parameter's value is not usable."""
    if name in _NAME_LISTS:
        what, look_up = _NAME_LISTS[name]
        if not _is_strs(value) or not value:
            raise ValueError(f"{name} must be a non-empty list of {what}")
        for item in value:
            look_up(item)
    elif name in _NAMES:
        _NAMES[name](value)
    elif name == "drops":
        if not isinstance(value, tuple) or not all(_is_strs(d) for d in value):
            raise ValueError("drops must be a list of lists of CPUID features")
        for d in value:
            for f in d:
                feature(f)
    elif name == "breaks":
        known = {inv.name for inv in INVARIANTS}
        if not _is_strs(value) or not set(value) <= known:
            raise ValueError(f"breaks must list invariants among {sorted(known)}, not {value!r}")
    elif name in _CHOICES:
        allowed = _CHOICES[name]
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    elif name == "value":
        if not isinstance(value, int):
            raise ValueError(f"value must be an integer, not {value!r}")
    elif not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")


def validate(claim: Claim) -> None:
    """Check every need of ``claim`` against its kind; FileFormatError naming the claim."""
    for i, need in enumerate(claim.needs, 1):
        where = f"claim {claim.id}, need {i} ({need.kind.value})"
        try:
            spec = SPECS[need.kind]
            got = need.param_names
            if not spec.required <= got:
                raise ValueError(f"it must have {sorted(spec.required - got)}")
            if not got <= spec.required | spec.optional:
                raise ValueError(f"unknown parameters {sorted(got - spec.required - spec.optional)}")
            if need.expect is not None and need.expect not in spec.expects:
                raise ValueError(f"expect must be one of {sorted(spec.expects)}, not {need.expect!r}")
            for name, value in need.params:
                _check_value(name, value)
            problem = spec.consistent(need) if spec.consistent is not None else None
            if problem is not None:
                raise ValueError(problem)
        except (ValueError, MsrvirtError) as err:
            raise FileFormatError(ORIGIN, f"{where}: {err}") from None


def designs_needed(claims: Sequence[Claim]) -> tuple[str, ...]:
    """The designs the claims' check and host-check needs name (``DESIGN@VARIANT`` for the
    latter), and those of their nested state needs, in table order (what the checker must
    run)."""
    out: list[str] = []
    for need in (n for c in claims for n in c.needs):
        if need.kind is K.CHECK:
            out.append(need.get("design"))
        elif need.kind is K.HOST_CHECK:
            out.append(host_design(need))
        elif need.kind is K.NESTED and need.get("aspect") == "state":
            out += [nested_design(m) for m in need.get("merges")]
    return tuple(dict.fromkeys(out))


def produce(need: Need, inputs: Inputs) -> Evidence:
    """The evidence for ``need``: its kind's producer."""
    return SPECS[need.kind].produce(need, inputs)
