"""Export: a dataset as nnU-Net v2 raw data, for the strongest image-only baseline."""
