"""Neural Spectral Modeling: small, accurate, fast networks on spectral images of sound."""

from src.paths import register_resolvers

register_resolvers()
