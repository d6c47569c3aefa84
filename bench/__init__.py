"""Benchmarks: ``make bench`` (``python -m bench``) runs every module here; docs/benchmarks.md
records the figures. A benchmark is a module ``bench/<name>.py`` with ``main(argv) -> int``;
modules whose names start with ``_`` are helpers."""
