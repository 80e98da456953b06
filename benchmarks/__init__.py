"""Benchmarks of jupyter_tfserving: ``python -m benchmarks.run`` (see benchmarks/README.md)."""
