"""Benchmarks, baselines and scoring: what measures the engine, not what it runs."""
