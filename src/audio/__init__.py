"""Audio files: reading recordings (mono, resampled, cut) and writing 16-bit WAVs."""
