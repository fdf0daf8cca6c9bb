"""The review: every claim of the seed patch and its review thread, with msrvirt's evidence.

The claims are a data table (claims.toml, read by table.py); evidence.py computes the
results they are judged on (the checker, the cost model, and conformance results the CLI
measured on /dev/kvm); kinds.py turns each claim's needs into evidence; judge.py is the one
judging function; verdicts.py holds the result values.  Only cli/ imports this package; it
renders through report/ and never touches the OS itself.
"""
