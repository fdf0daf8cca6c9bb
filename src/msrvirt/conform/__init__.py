"""Conformance: probe scenarios as data, the model's predictions, and the pure comparison
with what a real kernel did (the live layer runs them)."""
