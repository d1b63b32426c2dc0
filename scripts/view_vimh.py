"""Render a grid of VIMH records with their decoded labels, and write WAVs: the stored notes when
the dataset has them, and the images turned back into sound (what the network saw).

    python scripts/view_vimh.py [DATASET_DIR] [--data saw] [--split train] [-n 16] [--wav 4]
        [--invert 4] [--gl-iter 32]

Without DATASET_DIR it shows the dataset of a data config (default `saw`, generating it first
if it is missing).
Frequency runs upward, time to the right; each channel of a record is drawn side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from src.audio.io import write_wav
from src.data.provision import dataset_folder
from src.data.vimh import VIMHDataset
from src.errors import DataError
from src.generation.rebuild import imager_from_info
from src.imaging.inversion import SpectrogramInverter
from src.paths import PROJECT_ROOT
from src.utils.config import compose_config


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


def record_tag(ds: VIMHDataset, values: np.ndarray) -> str:
    return "_".join(f"{p.name}{v:.3g}" for p, v in zip(ds.params, values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", nargs="?", help="a VIMH folder (default: the --data config's)")
    ap.add_argument("--data", default="saw", help="data config to show when no folder is given")
    ap.add_argument("--split", default="train")
    ap.add_argument("-n", type=int, default=16, help="records to show")
    ap.add_argument("--seed", type=int, default=0, help="which records (random, seeded)")
    ap.add_argument("--out", default=str(PROJECT_ROOT / "logs" / "view"), help="output folder")
    ap.add_argument("--wav", type=int, default=4, help="WAVs to write when audio is stored")
    ap.add_argument(
        "--invert", type=int, default=4, help="records whose image is inverted to a WAV"
    )
    ap.add_argument("--gl-iter", type=int, default=32, help="Griffin-Lim iterations")
    args = ap.parse_args()

    if args.dataset:
        root = Path(args.dataset)
    else:
        cfg = compose_config("train", [f"data={args.data}"])
        root = dataset_folder(cfg.data, cfg.paths.data_dir)
    ds = VIMHDataset(root)
    n = min(args.n, len(ds[args.split]))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds[args.split]), n, replace=False))
    out = Path(args.out)
    png = render_grid(ds, args.split, idx, out / f"{root.name}_{args.split}.png")
    print(f"wrote {png}")
    values = ds[args.split].values()
    if ds.audio_available and args.wav > 0:
        audio = ds.audio(args.split)
        sr = int(ds.info.raw["sample_rate"])
        for i in idx[: args.wav]:
            path = out / f"{root.name}_{args.split}_{i}_{record_tag(ds, values[i])}.wav"
            write_wav(path, np.asarray(audio[i]), sr)
            print(f"wrote {path}")
    if args.invert > 0:
        try:
            imager = imager_from_info(ds.info)
        except DataError as e:
            print(f"no inversion: {e}")
            return
        pick = idx[: args.invert]
        images = torch.from_numpy(np.array(ds[args.split].images[pick]))
        heard = SpectrogramInverter(imager, n_iter=args.gl_iter)(images)
        for i, note in zip(pick, heard):
            tag = record_tag(ds, values[i])
            path = out / f"{root.name}_{args.split}_{i}_{tag}_inverted.wav"
            write_wav(path, note, imager.sample_rate)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
