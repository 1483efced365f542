"""The benchmark harness of rawbg: ``python -m benchmarks`` (see benchmarks/README.md)."""
