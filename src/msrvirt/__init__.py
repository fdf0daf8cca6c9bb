"""msrvirt: an executable, checked model of how KVM virtualizes x86 MSRs."""

__version__ = "0.1.0"
