"""asv benchmarks for mlpbench (``asv.conf.json``: ``"benchmark_dir": "bench"``); grids from ``mlpbench/cases.py``."""
