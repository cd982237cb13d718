"""Benchmarks: each ``bench_<area>.py`` exposes ``run(quick=False) -> list[dict]``."""
