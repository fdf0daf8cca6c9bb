"""Workloads and VM-exit cost estimates (docs/cost.md).

Modules, bottom up: ``workload`` (profiles as data files, each rate with its source),
``constants`` (per-exit costs, built-in or measured, with their sources), ``units``
(what one workload event does, driven through the checker's machine, and the counts),
``model`` (estimates and sweeps per policy).  Imports arch, policy and machine only.
"""
