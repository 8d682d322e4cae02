"""Inference: load a checkpoint safely, segment images from a prompt, draw overlays and attention."""
