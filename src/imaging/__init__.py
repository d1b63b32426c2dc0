"""Audio -> spectral images: the dataset imager and the windows/filterbanks it shares with the
trainable front-end."""

from src.imaging.imager import ChannelSpec, SpectrogramImager, choose_hop

__all__ = ["ChannelSpec", "SpectrogramImager", "choose_hop"]
