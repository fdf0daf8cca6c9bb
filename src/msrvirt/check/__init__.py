"""Exhaustive exploration of the machine model, invariants and counterexample traces."""
