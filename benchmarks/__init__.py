"""Benchmarks (not part of the installed package; extra dependencies: ``pip install -e ".[bench]"``)."""
