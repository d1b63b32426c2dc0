"""Synthesize a labelled VIMH dataset: `python generate_vimh.py [hydra overrides]`.

Examples:
    python generate_vimh.py                                   # the default dataset, into data/
    python generate_vimh.py synth=moog dataset.size=4096 dataset.seed=1
    python generate_vimh.py spectrogram=mel_2res dataset.store_audio=true
"""

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from src.synth.generate import generate_dataset


@hydra.main(version_base="1.3", config_path="configs", config_name="generate")
def main(cfg: DictConfig) -> str:
    return str(generate_dataset(cfg))


if __name__ == "__main__":
    main()
