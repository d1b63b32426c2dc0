"""Backbones: plain nn.Modules taking `input_shape=(C, H, W)` and exposing `out_features`."""

from src.models.components.bcresnet import BCResNet, SubSpectralNorm
from src.models.components.cnn import ConvNet
from src.models.components.frontend import STFTMelFrontend
from src.models.components.linear import LinearBackend
from src.models.components.rnn import FrameRNN
from src.models.components.vit import SpectrogramViT
from src.models.components.waveform import FrontendNet

__all__ = [
    "BCResNet",
    "ConvNet",
    "FrameRNN",
    "FrontendNet",
    "LinearBackend",
    "STFTMelFrontend",
    "SpectrogramViT",
    "SubSpectralNorm",
]
