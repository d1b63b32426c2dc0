"""What a tested sequence model did: the metrics table, errors against horizon, and examples
to look at and listen to (`callbacks=sequence` in training, `callbacks=eval_sequence` in eval).

Written into the run folder (a `dirname` subfolder): `sequence_metrics.csv` (every predictor,
one step and rollout, every spectral metric), `horizon.csv` and `horizon.png` (rollout errors
per step of the horizon, model and baselines), and for `n_listen` test phrases spread over the
split `example_NNN.png` (target, one-step and rollout spectrograms) with Griffin-Lim WAVs of
each (`src/imaging/inversion.py`): the rollout is primed with the first `context` frames of the
phrase and generates the rest of it, longer than the horizon it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning_utilities.core.rank_zero import rank_zero_only
from rich.console import Console
from rich.table import Table

from src.audio.io import write_wav
from src.data.frames import frame_imager
from src.errors import ConfigError
from src.evaluation.report import csv_text, write_text
from src.imaging.inversion import SpectrogramInverter
from src.metrics import metric_key
from src.metrics.spectral import ERRORS, UNITS
from src.models.sequence_module import MODES, PREDICTORS, PREFIX
from src.utils.media import log_media
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)
KINDS = ("target", "one_step", "rollout")


def metrics_rows(metrics: dict, stage: str = "test") -> list[list]:
    """[predictor, mode, *ERRORS] rows of the logged metrics (missing ones left out)."""
    rows = []
    for mode in MODES:
        for p in PREDICTORS:
            who = None if p == "model" else p
            keys = [metric_key(stage, PREFIX[mode] + e, who) for e in ERRORS]
            if all(k in metrics for k in keys):
                rows.append([p, mode, *(float(metrics[k]) for k in keys)])
    return rows


class SequenceReport(L.Callback):
    """After testing (rank 0): the table, the horizon curves and the examples.

    Args:
        dirname: subfolder of the run folder (None: the run folder itself).
        n_listen: test phrases that get a figure and WAVs (0: none).
        n_iter: Griffin-Lim iterations.
    """

    def __init__(self, dirname: str | None = "sequence", n_listen: int = 3, n_iter: int = 32):
        if n_listen < 0 or n_iter < 0:
            raise ConfigError("sequence report: n_listen and n_iter must be >= 0")
        self.dirname = dirname
        self.n_listen = int(n_listen)
        self.n_iter = int(n_iter)
        self.files: list[Path] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test" and not hasattr(pl_module, "horizon_curves"):
            raise ConfigError(
                f"the sequence report needs a sequence model, not {type(pl_module).__name__}"
            )

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        out = Path(trainer.default_root_dir)
        if self.dirname:
            out = out / self.dirname
        rows = metrics_rows(trainer.callback_metrics)
        self.files = [write_table(rows, out / "sequence_metrics.csv")]
        print_table(rows, trainer.callback_metrics)
        curves = pl_module.horizon_curves()
        if curves:
            frames = pl_module.hparams.frames
            seconds = frames["hop_length"] / frames["sample_rate"]
            self.files += write_horizon(curves, seconds, out)
        if self.n_listen and trainer.world_size == 1:
            self.files += self.write_examples(trainer, pl_module, out)
        elif self.n_listen:
            log.warning("sequence report: examples skipped under several processes")
        log.info(f"Wrote the sequence report ({len(self.files)} files) to {out}")
        log_media(trainer, self.files, out, "sequence")

    def write_examples(self, trainer, pl_module, out: Path) -> list[Path]:
        dm = trainer.datamodule
        n_records = dm.splits["test"].n_records
        index = np.unique(np.linspace(0, n_records - 1, min(self.n_listen, n_records)).round())
        frames = dm.records("test", index.astype(np.int64)).float().div_(255.0)
        frames = frames.to(pl_module.device)
        context = pl_module.window[0]
        pred = pl_module.predict_record(frames, context)
        facts = pl_module.hparams.frames
        lo, hi = float(facts["db_min"]), float(facts["db_max"])
        inverter = SpectrogramInverter(frame_imager(facts, frames.shape[1]), n_iter=self.n_iter)
        files = []
        for kind in KINDS:
            db = lo + pred[kind].detach().cpu().transpose(1, 2) * (hi - lo)  # (n, H, W)
            audio = inverter.invert_db(db).numpy()
            for i, a in enumerate(audio):
                path = out / f"example_{i:03d}_{kind}.wav"
                files.append(write_wav(path, a, int(facts["sample_rate"])))
        for i, record in enumerate(index):
            files.append(
                example_figure(
                    {k: v[i].detach().cpu().numpy() for k, v in pred.items()},
                    context,
                    out / f"example_{i:03d}.png",
                    f"test phrase {int(record)}: primed with {context} frames",
                )
            )
        return files


def write_table(rows: list[list], path: Path) -> Path:
    return write_text(path, csv_text(["predictor", "mode", *ERRORS], rows))


def print_table(rows: list[list], metrics: dict) -> None:
    table = Table(title="test: model and baselines (linear-scale mel; one step and rollout)")
    for col in ("predictor", "mode", *(f"{e} {UNITS.get(e, '')}".strip() for e in ERRORS)):
        table.add_column(col, justify="left" if col in ("predictor", "mode") else "right")
    for r in rows:
        table.add_row(r[0], r[1], *(f"{v:.4g}" for v in r[2:]))
    score = metrics.get(metric_key("test", "score"))
    if score is not None:
        table.caption = f"test/score (1 - MSE / repeat-last MSE, one step) = {float(score):.4f}"
    console = Console()
    if not console.is_terminal:  # logs: wide enough for every column
        console = Console(width=140)
    console.print(table)


def write_horizon(curves: dict, seconds: float, out: Path) -> list[Path]:
    """horizon.csv (step, predictor, every metric) and horizon.png (a panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    rows = [
        [h + 1, round((h + 1) * seconds, 6), p, *(float(curves[p][e][h]) for e in ERRORS)]
        for p in names
        for h in range(len(curves[p]["mse"]))
    ]
    header = ["step", "seconds", "predictor", *ERRORS]
    files = [write_text(out / "horizon.csv", csv_text(header, rows))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    for ax, e in zip(axes.flat, ERRORS):
        for p in names:
            y = curves[p][e].cpu().numpy()
            ax.plot(np.arange(1, len(y) + 1), y, marker=".", label=p)
        ax.set_title(f"{e}" + (f" ({UNITS[e]})" if UNITS.get(e) else ""), fontsize=9)
        ax.set_xlabel(f"rollout step (frames of {1000 * seconds:.0f} ms)", fontsize=8)
        ax.set_yscale("log" if e == "mse" else "linear")
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Free-running rollout: error against horizon (test)", fontsize=10)
    fig.tight_layout()
    path = out / "horizon.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [*files, path]


def example_figure(pred: dict, context: int, path: Path, title: str) -> Path:
    """Target, one-step and rollout spectrograms of one phrase, context marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(KINDS), 1, figsize=(10, 2.2 * len(KINDS)), sharex=True)
    for ax, kind in zip(axes, KINDS):
        ax.imshow(pred[kind].T, origin="lower", aspect="auto", vmin=0.0, vmax=1.0)
        ax.axvline(context - 0.5, color="w", lw=1, ls="--")
        err = float(np.square(pred[kind][context:] - pred["target"][context:]).mean())
        label = kind.replace("_", "-")
        if kind != "target":
            label += f" (unit log-mel MSE after the context {err:.4f})"
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel bin", fontsize=8)
    axes[-1].set_xlabel("frame", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
