"""Benchmarks and simulations: `simulate`, `bench_model`, `bench_score`, `bench_simulate`.

They drive all three apps through their public services and tasks, so they live above them; nothing
in projects, labeling or modeling imports from here.
"""
