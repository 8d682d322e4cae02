"""Data loading and synthetic dataset generation."""
