"""The stateful model: CPUs, VMCS, host kernel, KVM vCPU and guest; step(state, event) -> state."""
