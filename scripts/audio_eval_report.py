"""Make the figures and tables of docs/audio_eval.md from the default experiment's checkpoint.

    python scripts/audio_eval_report.py [--ckpt PATH] [--markdown docs/audio_eval.md]
        [--figures docs/figures/audio_eval] [--inversion-records 512]

1. Runs the documented command, `python src/eval.py ckpt_path=<ckpt> callbacks=eval_audio`,
   timing it from launch to exit, and tabulates its resynthesis report (model and baselines).
2. Times rendering for the evaluation against generation's rendering of the same records.
3. Measures spectrogram inversion on the default dataset's test notes (re-rendered from the
   JSON: the stored waveforms bit for bit), against what the chain can reach.
4. Runs `python src/predict.py` on 44.1 kHz files: notes of the dataset's synth with known
   parameters and a plucked string (Karplus-Strong) unlike anything in the training data.

Without --ckpt it takes the newest best checkpoint under logs/train/runs (make train).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import soundfile as sf
import torch

from src.data.vimh import VIMHDataset
from src.generation.rebuild import renderer_from_info
from src.generation.renderer import batch_generator
from src.imaging.inversion import SpectrogramInverter
from src.metrics.audio import log_spectral_distance, spectral_convergence, stft_power
from src.paths import PROJECT_ROOT

from mdreport import machine_line, update_section

METRIC_ROWS = (
    "mss",
    "lsd_db",
    "sc",
    "mfcc_dtw",
    "f0_err_cents",
    "rms_cos",
    "mrstft",
    "snr_db",
    "si_sdr_db",
    "centroid_err_hz",
)


def machine() -> str:
    """The machine line, with the load: these numbers are wall-clock times."""
    return machine_line()  # it states the load average


def newest_checkpoint() -> Path:
    found = sorted(
        (PROJECT_ROOT / "logs" / "train" / "runs").glob("*/checkpoints/epoch_*.ckpt"),
        key=lambda p: p.stat().st_mtime,
    )
    if not found:
        sys.exit("no checkpoint under logs/train/runs: run `python src/train.py` first")
    return found[-1]


def run(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def checkpoint_seed(ckpt: Path) -> str:
    """The seed of the run a checkpoint belongs to (its .hydra config), or '?'."""
    cfg = ckpt.parent.parent / ".hydra" / "config.yaml"
    if cfg.exists():
        from omegaconf import OmegaConf

        return str(OmegaConf.load(cfg).get("seed", "?"))
    return "?"


def cell(stats: dict) -> str:
    return f"{stats['median']:.3g} ({stats['q25']:.3g} to {stats['q75']:.3g})"


def resynthesis_section(ckpt: Path, figures: Path, stamp: str) -> tuple[str, Path]:
    out = PROJECT_ROOT / "logs" / "eval" / "runs" / f"{stamp}_audio_eval"
    seconds, _ = run(
        [
            "src/eval.py",
            f"ckpt_path={ckpt}",
            "callbacks=eval_audio",
            f"hydra.run.dir={out}",
            "extras.print_config=false",
        ]
    )
    report = json.loads((out / "resynthesis" / "resynthesis_summary.json").read_text())
    seed = checkpoint_seed(ckpt)
    s = report["summary"]
    names = list(s)
    heads = [k for k in s["model"] if k.startswith("abs_err_")]
    units = report["units"]
    lines = [
        f"| metric (one checkpoint: a single run, seed {seed}) | {' | '.join(names)} |",
        "|---|" + "---:|" * len(names),
    ]
    for m in (*METRIC_ROWS, *heads):
        unit = f" ({units[m]})" if units.get(m) else ""
        lines.append(f"| {m}{unit} | " + " | ".join(cell(s[n][m]) for n in names) + " |")
    for name in ("resynthesis_metrics.png", "record_000.png", "record_001.png"):
        shutil.copy(out / "resynthesis" / name, figures / name)
    rel = figures.relative_to(PROJECT_ROOT / "docs")
    body = f"""## The default experiment's checkpoint

`python src/eval.py ckpt_path={ckpt.relative_to(PROJECT_ROOT)} callbacks=eval_audio` took
**{seconds:.1f} s** from launch to exit (testing, the report on all {report["records"]} test
records of `{Path(report["dataset"]).name}`, its CSV/JSON, 4 figures and 8 WAVs). Target:
{report["target"]} notes. Median (first to third quartile) per record, for this one
checkpoint (seed {seed}); the spread over seeds of the same numbers is in
[results.md](results.md) (three seeds of the default experiment):

{chr(10).join(lines)}

![metric distributions]({rel}/resynthesis_metrics.png)

![record 0]({rel}/record_000.png)
![record 1]({rel}/record_001.png)

Machine: {machine()}.
"""
    return body, Path(report["dataset"])


def speed_section(dataset: Path) -> str:
    """Rendering for resynthesis vs generation's rendering of the same test records."""
    ds = VIMHDataset(dataset)
    dr = renderer_from_info(ds.info)
    split = ds["test"]
    n = len(split)
    values = {p.name: split.values()[:, i] for i, p in enumerate(ds.params)}
    codes = np.asarray(split.codes)
    gen, res = [], []
    for _ in range(3):
        started = time.perf_counter()
        for b, s, e in dr.batches("test", n):
            dr.renderer.render(codes[s:e], batch_generator(dr.seed, "test", b))
        gen.append(time.perf_counter() - started)
        started = time.perf_counter()
        dr.render_records("test", values)
        res.append(time.perf_counter() - started)
    g, r = n / min(gen), n / min(res)
    return f"""## Rendering speed

The {n} test records rendered as generation renders them (synth, noise floor and imager) and as
the evaluation renders a predictor (synth and noise floor, the same code), best of 3:

| path | notes/s |
|---|---:|
| generation: `Renderer.render` (audio and images) | {g:,.0f} |
| resynthesis: `DatasetRenderer.render_records` (audio) | {r:,.0f} |

Resynthesis renders at {r / g:.2f}x generation's speed: no per-record Python loop.

Machine: {machine()}.
"""


def karplus_strong(freq: float, sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A plucked string: a noise burst recirculating through a delay line with a two-point
    average (pitch sr / (period + 0.5))."""
    rng = np.random.default_rng(seed)
    period = round(sr / freq - 0.5)
    out = np.zeros(round(sr * seconds))
    out[:period] = rng.uniform(-1, 1, period)
    for i in range(period + 1, len(out)):  # a reference sound, not a hot path
        out[i] = 0.498 * (out[i - period] + out[i - period - 1])
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def quartiles(v: torch.Tensor) -> str:
    return f"{v.median():.3f} ({v.quantile(0.25):.3f} to {v.quantile(0.75):.3f})"


def inversion_section(dataset: Path, figures: Path, n: int) -> str:
    ds = VIMHDataset(dataset)
    dr = renderer_from_info(ds.info)
    split = ds["test"]
    n = min(n, len(split))
    values = {p.name: split.values()[:n, i] for i, p in enumerate(ds.params)}
    audio = dr.render_records("test", values)
    images = torch.from_numpy(np.array(split.images[:n]))
    assert torch.equal(dr.renderer.image(audio), images), "re-rendered notes differ"
    inverter = SpectrogramInverter(dr.imager)
    n_fft = inverter.n_fft
    window = torch.hann_window(n_fft)
    exact = torch.stft(audio, n_fft, inverter.hop, window=window, return_complex=True)
    started = time.perf_counter()
    heard = inverter(images)
    per_note = (time.perf_counter() - started) / n
    rows = {
        "Griffin-Lim on the exact STFT magnitudes": inverter.griffin_lim(exact.abs().square()),
        "exact band powers (before 8-bit quantisation), inverted": inverter.invert_db(
            dr.imager.to_float(audio)[:, inverter.channel]
        ),
        "**the 8-bit image, inverted** (what the viewer plays)": heard,
        "another record's inversion (an unrelated note)": heard.roll(1, 0),
    }
    ref = stft_power(audio, n_fft)
    lines = [
        "| audio compared with the stored note | spectral convergence | LSD (dB) |",
        "|---|---:|---:|",
    ]
    for label, x in rows.items():
        p = stft_power(x, n_fft)
        sc, lsd = spectral_convergence(p.sqrt(), ref.sqrt()), log_spectral_distance(p, ref)
        lines.append(f"| {label} | {quartiles(sc)} | {quartiles(lsd)} |")
    pixel = (dr.imager(heard).float() - images.float()).abs().mean(dim=(1, 2, 3))

    i = 0
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.5))
    for col, (x, label) in enumerate(((audio[i], "stored note"), (heard[i], "inverted image"))):
        spec = 10 * stft_power(x[None], n_fft)[0].log10()
        axes[0, col].imshow(
            spec.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-90,
            vmax=0,
            extent=(0, len(x) / dr.sample_rate, 0, dr.sample_rate / 2),
        )
        axes[0, col].set_title(f"{label}: STFT dB (n_fft {n_fft})", fontsize=8)
        axes[0, col].set_ylabel("Hz", fontsize=7)
        img = dr.imager(x[None])[0, inverter.channel]
        axes[1, col].imshow(
            img.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=255
        )
        axes[1, col].set_title(f"{label}: its image", fontsize=8)
        for ax in axes[:, col]:
            ax.tick_params(labelsize=6)
    true = ", ".join(f"{k} {v[i]:.3g}" for k, v in values.items())
    fig.suptitle(f"test record {i} ({true}): stored vs heard from its image", fontsize=9)
    fig.tight_layout()
    fig.savefig(figures / "inversion.png", dpi=100)
    plt.close(fig)
    rel = figures.relative_to(PROJECT_ROOT / "docs")
    return f"""## Spectrogram inversion on the default dataset

The first {n} test notes of `{dataset.name}` (re-rendered from its JSON, identical to the notes
generation imaged: the script checks the images match byte for byte), compared on a
{n_fft}-point STFT (hop {inverter.hop}) with the audio below. Median (quartiles) per note;
{inverter.griffin_lim.n_iter} Griffin-Lim iterations, {inverter.nnls_iter} NNLS refinements,
{per_note * 1000:.1f} ms per note. Re-imaging the inverted notes gives the original image back
within a median {pixel.median():.1f} pixel levels ({pixel.median() * 80 / 255:.1f} dB) per pixel.

{chr(10).join(lines)}

![inversion]({rel}/inversion.png)

Machine: {machine()}.
"""


def predict_section(ckpt: Path, dataset: Path, figures: Path, stamp: str) -> str:
    """predict.py on 44.1 kHz files: notes of the dataset's synth with known values (two on
    its class grid, one halfway between classes) and a plucked string."""
    sr = 44100
    ds = VIMHDataset(dataset)
    dr = renderer_from_info(ds.info)
    # Class positions: negative counts from the top, fractional lies between two classes.
    picks = {"grid_a": 1.0, "grid_b": -2.0, "between": 2.5}
    known = {
        # class_value: along the parameter's axis (octaves for a log scale such as decay)
        name: {p.name: float(p.class_value(k if k >= 0 else p.num_classes + k)) for p in ds.params}
        for name, k in picks.items()
    }
    varying = {p.name: np.array([known[n][p.name] for n in picks]) for p in ds.params}
    values = dr.full_values(varying)
    tensors = {k: torch.from_numpy(v) for k, v in values.items()}
    n_samples = round(sr * dr.n_samples / dr.sample_rate)
    notes = dr.renderer.synth.render(tensors, sr, n_samples, torch.Generator().manual_seed(1))
    folder = Path(tempfile.mkdtemp(prefix="nsm_predict_"))
    for i, name in enumerate(picks):
        sf.write(folder / f"{name}.wav", notes[i].numpy(), sr, subtype="PCM_16")
    sf.write(folder / "pluck_a3.wav", karplus_strong(220.0, sr, 1.2), sr, subtype="PCM_16")
    known["pluck_a3"] = {"pitch": 57.0}  # 220 Hz; its other parameters are not the synth's
    out = PROJECT_ROOT / "logs" / "predict" / "runs" / f"{stamp}_audio_eval"
    seconds, _ = run(
        [
            "src/predict.py",
            f"ckpt_path={ckpt}",
            f"audio={folder}",
            f"hydra.run.dir={out}",
            "extras.print_config=false",
        ]
    )
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    heads = [p.name for p in ds.params]
    lines = ["| file | " + " | ".join(f"{h} (true / predicted)" for h in heads) + " |"]
    lines.append("|---|" + "---:|" * len(heads))
    for r in rows:
        name = Path(r["file"]).stem
        cells = []
        for h in heads:
            true = known[name].get(h)
            cells.append(f"{'-' if true is None else f'{true:.3g}'} / {float(r[h]):.3g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pluck = next(out.glob("*_pluck_a3.png"))
    shutil.copy(pluck, figures / "predict_pluck.png")
    shutil.rmtree(folder)
    rel = figures.relative_to(PROJECT_ROOT / "docs")
    return f"""## Predicting on audio files

`python src/predict.py ckpt_path=... audio=<folder>` on four 44.1 kHz files took {seconds:.1f} s
from launch to exit: three notes of the dataset's synth rendered at 44.1 kHz with known values
(`grid_a`, `grid_b` on the dataset's class grid, `between` halfway between two classes of every
parameter) and a Karplus-Strong plucked string at 220 Hz (MIDI 57), a sound unlike the
training data:

{chr(10).join(lines)}

![predict on a plucked string]({rel}/predict_pluck.png)

Machine: {machine()}.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=PROJECT_ROOT / "docs" / "audio_eval.md")
    ap.add_argument(
        "--figures", type=Path, default=PROJECT_ROOT / "docs" / "figures" / "audio_eval"
    )
    ap.add_argument("--inversion-records", type=int, default=512)
    args = ap.parse_args()
    ckpt = (args.ckpt or newest_checkpoint()).resolve()
    figures = args.figures.resolve()
    figures.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    print(f"checkpoint: {ckpt}")
    body, dataset = resynthesis_section(ckpt, figures, stamp)
    update_section(args.markdown, "audio_eval_resynthesis", body)
    update_section(args.markdown, "audio_eval_speed", speed_section(dataset))
    update_section(
        args.markdown,
        "audio_eval_inversion",
        inversion_section(dataset, figures, args.inversion_records),
    )
    update_section(
        args.markdown, "audio_eval_predict", predict_section(ckpt, dataset, figures, stamp)
    )
    print(f"updated {args.markdown} and {figures}")


if __name__ == "__main__":
    main()
