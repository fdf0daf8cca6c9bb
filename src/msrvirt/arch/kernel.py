"""Where each rule comes from: kernel trees pinned to a commit, and citations into them.

Every MSR row (arch/msrs.py) and every intercept rule (policy/policies.py) cites the
kernel file and function it follows, at one of the trees below; docs/kernel-sources.md
lists them with what was read in each.  A citation is data: it names a file and one or
more functions, never copies code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    """A kernel source tree pinned to one commit."""

    name: str
    repo: str  # GitHub owner/name of the stored copy, or where a posted series lives
    ref: str  # the commit, or the posted series' version

    def __str__(self) -> str:
        return f"{self.name} ({self.repo} @ {self.ref[:12]})"


# The tree msrvirt models: Linux v6.19 ("Import Linux v6.19").
V6_19 = Tree(name="Linux v6.19", repo="matankalina/linux-6.19.10-fork",
             ref="094d869456d2bb93023e0ef9bf84a0758cbe8085")
# Linux v6.19.9 (stable): differs from v6.19 in MSR emulation only in the return code of the
# KVM PV MSRs whose feature is off in an enforced PV CPUID (KVM_MSR_RET_UNSUPPORTED, not 1).
V6_19_9 = Tree(name="Linux v6.19.9", repo="AlfredoFerreira04/scheduler-linux-6.19.9-env",
               ref="0d965aeb50b4562a5039c9ad24e11d4212b52645")
# PVM, the software KVM backend of the machines msrvirt was checked on: a later public fork of the RFC.
PVM_FORK = Tree(name="PVM (post-RFC fork)", repo="loopholelabs/linux-pvm",
                ref="004596881ef833d52c15bc3398d9e70101db68ba")
# The unmerged FRED series v9 (posted patches; kvm-msr-facts.md sections 3 and 6).
FRED_V9 = Tree(name="KVM FRED series v9 (posted, Oct 2025)", repo="lore.kernel.org",
               ref="v9")

# The AMD SVM FRED series (posted patches; kvm-svm-common-pvm-facts.md 1c).
SVM_FRED = Tree(name="AMD SVM FRED series (posted, Jan 2026)", repo="lore.kernel.org",
                ref="2026-01-29")

TREES: tuple[Tree, ...] = (V6_19, V6_19_9, PVM_FORK, FRED_V9, SVM_FRED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cite:
    """One place in a kernel tree: a file and the functions (or tables) read there."""

    file: str
    functions: tuple[str, ...]
    tree: Tree = V6_19

    def __str__(self) -> str:
        return f"{self.file} {', '.join(self.functions)}"


def cite(file: str, *functions: str, tree: Tree = V6_19) -> Cite:
    """A citation of ``functions`` in ``file`` (arch/x86/kvm/ is implied for bare names)."""
    path = file if "/" in file and not file.startswith(("vmx/", "svm/", "pvm/")) \
        else f"arch/x86/kvm/{file}"
    return Cite(file=path, functions=functions, tree=tree)
