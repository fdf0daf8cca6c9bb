"""The review: every claim of the seed patch and its review thread, with msrvirt's evidence.

Assembles evidence from every layer below it (policy decisions and bitmaps, the checker,
the cost model, and conformance results the CLI measured on /dev/kvm) and renders it
through report/.  Only cli/ imports this package; it never touches the OS itself.
"""
