"""Benchmark harness for `realtime`: a bounded load generator and the scenarios it runs.

Run ``python -m bench.run --help`` from the repository root; see bench/README.md.
"""
