"""Benchmarks. Each lives in its own package with a ``run`` module; ``bench/README.md`` says how to run them."""
