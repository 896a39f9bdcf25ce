"""Peer implementations run by benchmarks/bench_peers.py (each as a process of its own)."""
