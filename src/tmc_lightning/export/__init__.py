"""Export: a dataset as nnU-Net v2 raw data (the strongest image-only baseline), a checkpoint as ONNX."""
