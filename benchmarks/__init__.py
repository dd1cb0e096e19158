"""Benchmarks of the trial path and the sweep machinery; see docs/benchmarks.md."""
