"""Workloads and VM-exit cost estimates."""
