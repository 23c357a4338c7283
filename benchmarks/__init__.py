"""Benchmarks of flowcore against normflows, the library people would use instead.

`python -m benchmarks.run` measures training, `log_prob` and sampling throughput and peak
memory of the shipped MNIST models next to matched normflows models, and 2-D convergence
speed on two moons, then writes the tables to BENCHMARKS.md. See `benchmarks/run.py`.
"""
