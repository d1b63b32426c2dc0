"""Models: the multihead LightningModule, its per-parameter heads and the backbones."""
