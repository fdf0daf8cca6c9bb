"""Facts as data: MSRs, CPUID features, host profiles, VMCS fields.  No logic beyond lookups."""
