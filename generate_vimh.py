"""Synthesize a labelled VIMH dataset: `python generate_vimh.py [hydra overrides]`.

A launcher for `src/generate.py`, kept at the root for the documented command. Examples:
    python generate_vimh.py                                   # the default dataset, into data/
    python generate_vimh.py synth=moog dataset.size=4096 dataset.seed=1
    python generate_vimh.py spectrogram=mel_2res dataset.store_audio=true
"""

from src.generate import main

if __name__ == "__main__":
    main()
