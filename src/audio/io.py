"""Audio files in and out: read a user's recordings as the dataset's notes, write 16-bit WAVs.

Files are read with soundfile (libsndfile: WAV, FLAC, OGG, AIFF, ...), mixed to mono by the
mean of their channels, resampled to the dataset's rate with torchaudio's windowed-sinc
resampler, and cut or zero-padded to the note length, from the file's start, from a detected
onset, or (prediction, `onset=each`) from every onset: a 5 ms frame within the threshold of the
loudest frame after at least `QUIET_FRAMES` frames below it. Sound no note covers is reported
in seconds. Levels are left alone: a note's level is one of the parameters a model estimates.
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
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64")
ONSETS = ("start", "detect")  # one note per file
PREDICT_ONSETS = (*ONSETS, "each")  # each: one note per onset (predict only)
QUIET_FRAMES = 4  # 5 ms frames below the onset threshold before a new note's onset
IGNORED_S = 0.05  # seconds of sound left out of every note before a file is reported


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


def _frame_power(audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    """(power of each whole 5 ms frame, frame length in samples)."""
    frame = max(1, sample_rate // 200)
    n = audio.shape[-1] // frame
    return audio[: n * frame].reshape(n, frame).square().mean(dim=1), frame


def _loud(power: torch.Tensor, threshold_db: float) -> torch.Tensor:
    return power >= power.max() * 10 ** (threshold_db / 10)


def onset_sample(audio: torch.Tensor, sample_rate: int, threshold_db: float = -30.0) -> int:
    """First sample of the first 5 ms frame within `threshold_db` of the loudest frame's power."""
    power, frame = _frame_power(audio, sample_rate)
    if len(power) == 0:
        return 0
    return int(torch.nonzero(_loud(power, threshold_db))[0, 0]) * frame


def onset_samples(audio: torch.Tensor, sample_rate: int, threshold_db: float = -30.0) -> list[int]:
    """First sample of every note: each 5 ms frame within `threshold_db` of the loudest frame
    that follows at least `QUIET_FRAMES` frames below it (the first loud frame included)."""
    power, frame = _frame_power(audio, sample_rate)
    if len(power) == 0:
        return [0]
    loud = _loud(power, threshold_db)
    quiet = torch.nn.functional.pad((~loud).float(), (QUIET_FRAMES, 0), value=1.0)
    before = quiet.unfold(0, QUIET_FRAMES, 1)[: len(loud)].all(dim=1)  # the frames before
    return (torch.nonzero(loud & before)[:, 0] * frame).tolist()


def ignored_seconds(
    audio: torch.Tensor, sample_rate: int, starts: list[int], length: int, threshold_db: float
) -> float:
    """Seconds of sound (5 ms frames within `threshold_db` of the loudest) outside every note
    window [start, start + length): what the model does not hear of the file."""
    power, frame = _frame_power(audio, sample_rate)
    if len(power) == 0:
        return 0.0
    t = torch.arange(len(power)) * frame
    begin = torch.tensor(starts)[:, None]
    covered = ((t >= begin) & (t + frame <= begin + length)).any(dim=0)
    return float((_loud(power, threshold_db) & ~covered).sum()) * frame / sample_rate


def _cut(x: torch.Tensor, start: int, rate: int, sample_rate: int, n_samples: int) -> torch.Tensor:
    """The note from `start`: the note's duration plus a margin for the resampling filter,
    resampled, then trimmed or zero-padded to `n_samples`."""
    x = x[start : start + -(-n_samples * rate // sample_rate) + 64]
    if rate != sample_rate:
        x = torchaudio.functional.resample(x, rate, sample_rate)
    x = x[:n_samples]
    return torch.nn.functional.pad(x, (0, n_samples - x.shape[0]))


def file_notes(
    path: Path, sample_rate: int, n_samples: int, onset: str = "start", onset_db: float = -30.0
) -> tuple[list[torch.Tensor], list[dict]]:
    """The notes of one file, and what was done to each: one from its start (`start`) or its
    first onset (`detect`), or one from every onset (`each`)."""
    if onset not in PREDICT_ONSETS:
        raise ValueError(f"onset must be one of {PREDICT_ONSETS}, got {onset!r}")
    mono, rate = read_audio(path)
    x = torch.from_numpy(mono)
    if onset == "each":
        starts = onset_samples(x, rate, onset_db)
    else:
        starts = [onset_sample(x, rate, onset_db) if onset == "detect" else 0]
    length = -(-n_samples * rate // sample_rate)  # the note's duration at the file's rate
    ignored = round(ignored_seconds(x, rate, starts, length, onset_db), 3)
    facts = [
        {
            "file": str(path),
            "file_rate": rate,
            "file_seconds": round(len(mono) / rate, 6),
            "onset_s": round(start / rate, 6),
            "ignored_s": ignored,  # of the whole file
        }
        for start in starts
    ]
    return [_cut(x, s, rate, sample_rate, n_samples) for s in starts], facts


def load_notes(
    files: list[Path],
    sample_rate: int,
    n_samples: int,
    onset: str = "start",
    onset_db: float = -30.0,
) -> tuple[torch.Tensor, list[dict]]:
    """(N, n_samples) notes of the files at the dataset's rate, one per file, and what was done
    to each; the first file that cannot be used is a DataError.

    Each file is cut at its start (or detected onset) to the note's duration plus a margin
    for the resampling filter, resampled, then trimmed or zero-padded to `n_samples`.
    """
    if onset not in ONSETS:
        raise ValueError(f"onset must be one of {ONSETS}, got {onset!r}")
    notes, facts = [], []
    for path in files:
        note, fact = file_notes(path, sample_rate, n_samples, onset, onset_db)
        notes += note
        facts += [{k: v for k, v in f.items() if k != "ignored_s"} for f in fact]
    return torch.stack(notes), facts


def read_notes(
    files: list[Path],
    sample_rate: int,
    n_samples: int,
    onset: str = "start",
    onset_db: float = -30.0,
) -> tuple[torch.Tensor, list[dict], list[tuple[str, str]]]:
    """Like `load_notes` for prediction: every note of every usable file (`onset="each"`:
    one per onset), and each file that cannot be used with its reason, so one bad file in a
    folder costs only itself. Sound the notes leave out is logged as a warning, in seconds."""
    notes, facts, bad = [], [], []
    for path in files:
        try:
            note, fact = file_notes(path, sample_rate, n_samples, onset, onset_db)
        except DataError as e:
            bad.append((str(path), str(e).removeprefix(f"{path}: ")))
            continue
        notes += note
        facts += fact
    warn_ignored(facts, n_samples / sample_rate, onset)
    audio = torch.stack(notes) if notes else torch.zeros(0, n_samples)
    return audio, facts, bad


def warn_ignored(facts: list[dict], note_seconds: float, onset: str) -> None:
    """One warning for the files whose sound the notes do not cover, with the seconds left."""
    ignored = {f["file"]: f["ignored_s"] for f in facts if f["ignored_s"] >= IGNORED_S}
    if not ignored:
        return
    worst = sorted(ignored, key=ignored.get, reverse=True)[:3]
    hint = (
        "; notes closer than a note's length, or louder than the threshold between them, "
        "are heard as one"
        if onset == "each"
        else "; pass onset=each to predict every note"
    )
    log.warning(
        f"{len(ignored)} file(s) hold sound the model does not hear (each note is "
        f"{note_seconds:g} s from its onset): {sum(ignored.values()):.2f} s ignored in all, "
        f"e.g. " + ", ".join(f"{Path(f).name}: {ignored[f]:.2f} s" for f in worst) + hint
    )


def unusable(bad: list[tuple[str, str]], total: int, shown: int = 5) -> str:
    """'2 of 5 files could not be used: a.wav: <reason>; ...' (the first `shown` named)."""
    named = "; ".join(f"{f}: {why}" for f, why in bad[:shown])
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return f"{len(bad)} of {total} files could not be used: {named}{more}"


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
