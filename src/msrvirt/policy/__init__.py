"""Pure functions over frozen values: bitmaps, the KVM MSR filter, intercept policies, decisions."""
