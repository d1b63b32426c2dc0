"""Render a grid of VIMH records with their decoded labels (and write WAVs when audio is stored).

    python scripts/view_vimh.py [DATASET_DIR] [--split train] [-n 16] [--out logs/view] [--wav 4]

Without DATASET_DIR it shows the default dataset (generating it first if it is missing).
Frequency runs upward, time to the right; each channel of a record is drawn side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src.data.vimh import VIMHDataset  # noqa: E402

DEFAULT = ROOT / "data" / "vimh-32x32x1_8000Hz_1p0s_16384dss_saw_3p"


def label_text(ds: VIMHDataset, values: np.ndarray) -> str:
    parts = []
    for p, v in zip(ds.params, values):
        unit = f" {p.unit}" if p.unit else ""
        parts.append(f"{p.name}={v:.3g}{unit}")
    return "\n".join(parts)


def render_grid(ds: VIMHDataset, split: str, indices: np.ndarray, path: Path) -> Path:
    part = ds[split]
    images, values = part.images[indices], part.values()[indices]
    c = ds.info.channels
    cols = int(np.ceil(np.sqrt(len(indices))))
    rows = int(np.ceil(len(indices) / cols))
    fig, axes = plt.subplots(
        rows, cols * c, figsize=(2.2 * cols * c, 2.6 * rows), squeeze=False, layout="constrained"
    )
    labels = ds.info.raw.get("channel_labels") or [f"ch{i}" for i in range(c)]
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, val) in enumerate(zip(images, values)):
        r, col = divmod(k, cols)
        for ch in range(c):
            ax = axes[r, col * c + ch]
            ax.imshow(img[ch], origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=255)
            ax.set_title((label_text(ds, val) if ch == 0 else "") + f"\n[{labels[ch]}]", fontsize=7)
    fig.suptitle(f"{ds.root.name} / {split} (records {indices.tolist()})", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", nargs="?", default=str(DEFAULT))
    ap.add_argument("--split", default="train")
    ap.add_argument("-n", type=int, default=16, help="records to show")
    ap.add_argument("--seed", type=int, default=0, help="which records (random, seeded)")
    ap.add_argument("--out", default=str(ROOT / "logs" / "view"), help="output folder")
    ap.add_argument("--wav", type=int, default=4, help="WAVs to write when audio is stored")
    args = ap.parse_args()

    root = Path(args.dataset)
    if not root.exists() and root == DEFAULT:
        from hydra import compose, initialize_config_dir

        from src.synth.generate import generate_dataset

        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            generate_dataset(compose(config_name="generate"))
    ds = VIMHDataset(root)
    n = min(args.n, len(ds[args.split]))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds[args.split]), n, replace=False))
    out = Path(args.out)
    png = render_grid(ds, args.split, idx, out / f"{root.name}_{args.split}.png")
    print(f"wrote {png}")
    if ds.audio_available and args.wav > 0:
        audio = ds.audio(args.split)
        sr = int(ds.info.raw["sample_rate"])
        for i in idx[: args.wav]:
            vals = ds[args.split].values()[i]
            tag = "_".join(f"{p.name}{v:.3g}" for p, v in zip(ds.params, vals))
            path = out / f"{root.name}_{args.split}_{i}_{tag}.wav"
            write_wav(path, np.asarray(audio[i]), sr)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
