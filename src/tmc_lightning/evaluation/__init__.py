"""Evaluation: score a checkpoint on its splits in one pass; per-image CSVs, CIs and overlays."""
