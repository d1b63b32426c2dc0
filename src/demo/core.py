"""What every demo shares: checking an upload, finding checkpoints, loading one as its task's
demo, and what a demo returns for the page to show.

A checkpoint is read the way `src/predict.py` reads it (`read_checkpoint`: tensors and plain
values only; `module_from_checkpoint`: hyperparameters through the allow-list). An upload is
data: anything but a readable, non-empty sound of at most `max_seconds` is refused with one
line saying why, before it is decoded whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from src.errors import DataError, user_error
from src.models.tasks import module_from_checkpoint, read_checkpoint
from src.utils.pylogger import RankedLogger
from src.utils.runs import CHECKPOINTS

log = RankedLogger(__name__)

MAX_LISTED = 200  # checkpoints the picker offers (newest first)


@dataclass
class Shown:
    """What one request shows: a message, a table, players and pictures, each with its label.

    `audio` maps a label to (sample rate, mono float32 samples); `images` a label to a PNG."""

    message: str
    header: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    audio: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)


def check_upload(path: str | Path | None, max_seconds: float) -> tuple[Path, float]:
    """(path, seconds) of an uploaded sound the demos can use; a DataError naming the file and
    what was expected otherwise (no file, not audio, empty, longer than `max_seconds`)."""
    if path is None or str(path) == "":
        raise DataError("no sound given: upload or record one, or pick a test record")
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise DataError(
            f"{path.name}: not a sound file this page can read (WAV, FLAC, OGG, AIFF; {e})"
        ) from e
    if info.frames <= 0:
        raise DataError(f"{path.name}: the file holds no audio samples")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise DataError(
            f"{path.name}: {seconds:.1f} s long; the page takes sounds of at most "
            f"{max_seconds:g} s (cut it, or predict it with src/predict.py)"
        )
    return path, seconds


def find_checkpoints(logs_dir: str | Path) -> list[Path]:
    """Checkpoints of the runs under `logs_dir` (`<run>/checkpoints/*.ckpt`), newest first."""
    root = Path(logs_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.rglob("*.ckpt") if p.parent.name == CHECKPOINTS and p.is_file()]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:MAX_LISTED]


def load_demo(ckpt_path: str | Path, cfg, work_dir: Path):
    """The demo of a checkpoint's task: `EstimationDemo` (parameter estimation; it needs the
    dataset named by `cfg.data`), `CodecDemo` or `SequenceDemo` (their checkpoints hold what
    they need)."""
    from src.demo.estimation import EstimationDemo
    from src.demo.frames import CodecDemo, SequenceDemo

    ckpt = read_checkpoint(ckpt_path)
    model = module_from_checkpoint(ckpt, ckpt_path)
    task = getattr(model, "task", "multihead")
    work_dir = Path(work_dir)
    if task == "codec":
        return CodecDemo(model, cfg, work_dir)
    if task == "sequence":
        return SequenceDemo(model, cfg, work_dir)
    return EstimationDemo(model, ckpt, str(ckpt_path), cfg, work_dir)


def resampled(path: Path, sample_rate: int, n_samples: int) -> torch.Tensor:
    """(n_samples,) mono samples of a checked file at `sample_rate`, cut or zero-padded."""
    from src.audio.io import _cut, read_audio

    mono, rate = read_audio(path)
    return _cut(torch.from_numpy(mono), 0, rate, sample_rate, n_samples)


def spectrogram_png(path: Path, sounds: dict[str, torch.Tensor], sample_rate: int) -> Path:
    """Log-power spectrograms of sounds side by side, one colour scale for all (to compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft = 512 if sample_rate > 12000 else 256
    window = torch.hann_window(n_fft)
    db = {
        k: 10
        * torch.log10(
            torch.stft(v.float(), n_fft, n_fft // 4, window=window, return_complex=True).abs() ** 2
            + 1e-10
        )
        for k, v in sounds.items()
    }
    top = max(float(d.max()) for d in db.values())
    fig, axes = plt.subplots(1, len(db), figsize=(4.5 * len(db), 3.2), squeeze=False)
    for ax, (label, d) in zip(axes[0], db.items()):
        seconds = len(sounds[label]) / sample_rate
        ax.imshow(
            d.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def image_png(path: Path, image: np.ndarray, labels: list[str], title: str) -> Path:
    """A model's input image (C, H, W), one panel per channel, row 0 at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(image), figsize=(3.2 * len(image), 3.0), squeeze=False)
    for ax, channel, label in zip(axes[0], image, labels):
        ax.imshow(channel, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("row", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


class Session:
    """The page's state and actions as plain methods: load a checkpoint, pick a test record,
    answer a sound. A user error never escapes: it becomes the message the page shows (and a
    failed load keeps the checkpoint that was loaded), so the server keeps serving."""

    def __init__(self, cfg, work_dir: Path) -> None:
        self.cfg, self.work_dir = cfg, Path(work_dir)
        self.demo = None
        self.ckpt_path: str | None = None

    def load(self, ckpt_path: str | Path | None) -> str:
        """Load a checkpoint; the message says what was loaded, or why not."""
        if not ckpt_path:
            return "error: no checkpoint chosen"
        try:
            demo = load_demo(ckpt_path, self.cfg, self.work_dir)
        except Exception as e:
            return error_message(e)
        self.demo, self.ckpt_path = demo, str(ckpt_path)
        return f"Loaded `{ckpt_path}` ({demo.kind})"

    def records(self) -> list[str]:
        if self.demo is None:
            return []
        try:
            return self.demo.test_records(int(self.cfg.test_records))
        except Exception as e:  # a dataset without a test split: no records to pick
            log.warning(f"no test records to pick: {error_message(e)}")
            return []

    def record(self, label: str | None) -> tuple[Path | None, str]:
        """(WAV of the picked test record, message); the label starts with its index."""
        if not label or self.demo is None:
            return None, ""
        try:
            path = self.demo.record_sound(int(str(label).split(":")[0]))
        except Exception as e:
            return None, error_message(e)
        return path, f"test record {label}"

    def answer(self, sound: str | Path | None, refine: bool = False) -> Shown:
        if self.demo is None:
            return Shown("error: no checkpoint is loaded; pick one above")
        try:
            path, _ = check_upload(sound, float(self.cfg.max_seconds))
            return self.demo.run(path, refine=bool(refine))
        except Exception as e:
            return Shown(error_message(e))


def error_message(e: Exception) -> str:
    """`error: <one line>` for a user error; anything else is logged whole and named."""
    err = user_error(e)
    if err is not None:
        return f"error: {err}"
    log.exception("the page's request failed")
    return f"error: {type(e).__name__}: {e} (an internal error: the log has the traceback)"
