"""Backbones: plain nn.Modules taking `input_shape=(C, H, W)` and exposing `out_features`."""

from src.models.components.cnn import ConvNet

__all__ = ["ConvNet"]
