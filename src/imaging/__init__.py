"""Audio -> spectral images: the dataset imager and the windows/filterbanks it shares with the
trainable front-end."""

from src.imaging.channels import ChannelSpec, choose_hop
from src.imaging.imager import SpectrogramImager

__all__ = ["ChannelSpec", "SpectrogramImager", "choose_hop"]
