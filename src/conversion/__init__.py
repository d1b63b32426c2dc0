"""Labelled recordings -> VIMH datasets: sources (layouts), splits, parallel decoding."""
