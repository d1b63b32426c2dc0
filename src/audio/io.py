"""Audio files in and out: read a user's recordings as the dataset's notes, write 16-bit WAVs.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG, AIFF, ...), mixed to mono by the
mean of their channels, resampled to the dataset's rate with torchaudio's windowed-sinc
resampler, and cut or zero-padded to the note length, from the file's start or from a detected
onset. Levels are left alone: a note's level is one of the parameters a model estimates.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from src.errors import DataError, DatasetNotFoundError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64")
ONSETS = ("start", "detect")


def audio_files(path: str | Path) -> list[Path]:
    """The file itself, or every audio file under a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetNotFoundError(f"audio={path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(
            f"audio={path}: the folder holds no audio files (looked for "
            f"{', '.join(AUDIO_SUFFIXES)})"
        )
    return files


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of a file; a clear error when it cannot be used."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise DataError(f"{path}: cannot read it as audio ({e})") from e
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DataError(f"{path}: the audio holds non-finite samples (NaN or infinity)")
    return mono, int(rate)


def onset_sample(audio: torch.Tensor, sample_rate: int, threshold_db: float = -30.0) -> int:
    """First sample of the first 5 ms frame within `threshold_db` of the loudest frame's power."""
    frame = max(1, sample_rate // 200)
    n = audio.shape[-1] // frame
    if n == 0:
        return 0
    power = audio[: n * frame].reshape(n, frame).square().mean(dim=1)
    loud = power >= power.max() * 10 ** (threshold_db / 10)
    return int(torch.nonzero(loud)[0, 0]) * frame


def load_notes(
    files: list[Path],
    sample_rate: int,
    n_samples: int,
    onset: str = "start",
    onset_db: float = -30.0,
) -> tuple[torch.Tensor, list[dict]]:
    """(N, n_samples) notes of the files at the dataset's rate, and what was done to each.

    Each file is cut at its start (or detected onset) to the note's duration plus a margin
    for the resampling filter, resampled, then trimmed or zero-padded to `n_samples`.
    """
    if onset not in ONSETS:
        raise ValueError(f"onset must be one of {ONSETS}, got {onset!r}")
    notes, facts = [], []
    for path in files:
        mono, rate = read_audio(path)
        x = torch.from_numpy(mono)
        start = onset_sample(x, rate, onset_db) if onset == "detect" else 0
        x = x[start : start + -(-n_samples * rate // sample_rate) + 64]
        if rate != sample_rate:
            x = torchaudio.functional.resample(x, rate, sample_rate)
        x = x[:n_samples]
        notes.append(torch.nn.functional.pad(x, (0, n_samples - x.shape[0])))
        facts.append(
            {
                "file": str(path),
                "file_rate": rate,
                "file_seconds": round(len(mono) / rate, 6),
                "onset_s": round(start / rate, 6),
            }
        )
    return torch.stack(notes), facts


def write_wav(path: Path, audio: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """A mono 16-bit PCM WAV (samples clipped to [-1, 1]), written to a temporary name first."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1).clip(-1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".wav")
    os.close(fd)
    try:
        sf.write(tmp, audio, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_clips(
    files: list[Path], sample_rate: int, clip_samples: int, hop: int | None = None
) -> tuple[torch.Tensor, list[dict]]:
    """(N, clip_samples) float32 clips cut from whole files at `sample_rate`, and where each
    came from ({"file", "start_s"}): every file mono and resampled, then cut every `hop`
    samples (default: back to back). A file shorter than one clip gives one zero-padded clip;
    a tail shorter than half a clip is dropped. For recordings that are not single notes
    (phrases, speech, music) used by the sequence and codec tasks.
    """
    hop = hop or clip_samples
    if clip_samples < 1 or hop < 1:
        raise ValueError(f"need clip_samples >= 1 and hop >= 1, got {clip_samples}, {hop}")
    clips, where = [], []
    for path in files:
        mono, rate = read_audio(path)
        x = torch.from_numpy(mono)
        if rate != sample_rate:
            x = torchaudio.functional.resample(x, rate, sample_rate)
        starts = list(range(0, max(len(x) - clip_samples, 0) + 1, hop))
        tail = len(x) - (starts[-1] + hop) if len(x) > clip_samples else 0
        if tail >= clip_samples // 2:
            starts.append(starts[-1] + hop)
        for s in starts:
            piece = x[s : s + clip_samples]
            clips.append(torch.nn.functional.pad(piece, (0, clip_samples - len(piece))))
            where.append({"file": str(path), "start_s": round(s / sample_rate, 6)})
    return torch.stack(clips), where
