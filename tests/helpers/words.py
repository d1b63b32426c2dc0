"""A tiny labelled collection of recordings, written by the test itself: synth notes of four
distinct timbres play the part of spoken "words", in the Speech Commands layout.

`root/<word>/<speaker>_nohash_<n>.wav`, speakers recorded at different sample rates and for
different lengths, `validation_list.txt` / `testing_list.txt` naming two speakers' files, a
`_background_noise_` folder that is no class, and a CSV manifest of the same files with the
word, the pitch (MIDI) and the speaker.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from src.audio.io import write_wav
from src.synth.fm import FMSynth
from src.synth.saw import SawSynth

WORDS = ("bell", "hollow", "pluck", "saw")
SPEAKERS = ("0a1b2c3d", "1b2c3d4e", "2c3d4e5f", "3d4e5f60", "4e5f6071", "5f607182")
RATES = (8000, 16000, 11025)  # speaker i records at RATES[i % 3]
VAL_SPEAKER, TEST_SPEAKER = SPEAKERS[4], SPEAKERS[5]


def render_words(word: str, pitch: np.ndarray, level: np.ndarray, rate: int, n: int, seed: int):
    """(len(pitch), n) float32 notes of one timbre."""
    b = len(pitch)
    g = torch.Generator().manual_seed(seed)
    common = {
        "pitch": torch.as_tensor(pitch, dtype=torch.float64),
        "level": torch.as_tensor(level, dtype=torch.float64),
        "attack": torch.full((b,), 0.005, dtype=torch.float64),
    }
    if word in ("saw", "pluck"):
        decay = torch.full((b,), 6.0 if word == "saw" else 90.0, dtype=torch.float64)
        return SawSynth().render({**common, "decay": decay}, rate, n, g)
    ratio, index = (3.5, 5.0) if word == "bell" else (1.0, 1.0)
    values = {
        **common,
        "decay": torch.full((b,), 12.0, dtype=torch.float64),
        "ratio": torch.full((b,), ratio, dtype=torch.float64),
        "index": torch.full((b,), index, dtype=torch.float64),
        "index_decay": torch.full((b,), 6.0, dtype=torch.float64),
    }
    return FMSynth(oversample=2).render(values, rate, n, g)


def write_words(root: Path, per_speaker: int = 4, seed: int = 0) -> list[dict]:
    """Write the collection under `root`; returns one row per file (file, word, pitch, speaker)."""
    rng = np.random.default_rng(seed)
    rows = []
    for si, speaker in enumerate(SPEAKERS):
        rate = RATES[si % len(RATES)]
        for wi, word in enumerate(WORDS):
            pitch = rng.integers(48, 73, per_speaker).astype(float)
            level = rng.uniform(-18, -6, per_speaker)
            seconds = rng.uniform(0.35, 0.7, per_speaker)
            n = int(0.7 * rate)
            notes = render_words(word, pitch, level, rate, n, seed * 1000 + si * 10 + wi).numpy()
            for k in range(per_speaker):
                rel = f"{word}/{speaker}_nohash_{k}.wav"
                write_wav(root / rel, notes[k, : int(seconds[k] * rate)], rate)
                rows.append({"file": rel, "word": word, "pitch": pitch[k], "speaker": speaker})
    noise = rng.normal(0, 0.1, 8000).astype(np.float32)
    write_wav(root / "_background_noise_" / "white_noise.wav", noise, 8000)
    for name, speaker in (("validation_list.txt", VAL_SPEAKER), ("testing_list.txt", TEST_SPEAKER)):
        lines = [r["file"] for r in rows if r["speaker"] == speaker]
        (root / name).write_text("\n".join(lines) + "\n")
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "word", "pitch", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return path
