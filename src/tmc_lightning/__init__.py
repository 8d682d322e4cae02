"""tmc-lightning: Lightning + Hydra suite for text-guided medical image segmentation."""

__version__ = "0.1.0"
