"""Benchmarks that print JSON figures (run through ``liveact bench ...``)."""
