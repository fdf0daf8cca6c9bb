"""The only package that touches the OS: /dev/kvm through ctypes and ioctls.

Modules, bottom up: ``uapi`` (ctypes mirrors of the KVM structures, ioctl
numbers), ``errors`` (KvmError and the guest errors), ``exits`` (typed KVM_RUN
exits and MSR answers), ``timer`` (a SIGALRM limit on KVM_RUN), ``kvm`` (the
Kvm, Vm and Vcpu handles), ``asm`` (a tiny 16-bit assembler), ``probe`` (the
probe guest and `Probe.run`), ``fingerprint`` (host facts as JSON and as a
HostProfile).  Nothing outside ``live`` and ``cli`` imports this package.
"""
