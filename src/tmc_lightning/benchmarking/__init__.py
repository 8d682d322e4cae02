"""Benchmarking: train-step and inference speed, memory and FLOP efficiency, as recorded tables."""
