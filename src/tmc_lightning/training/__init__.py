"""Training: the LightningModule, the factory that builds a run from its config, callbacks, W&B."""
