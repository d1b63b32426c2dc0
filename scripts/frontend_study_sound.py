"""Judge the front-end study's runs by the sound: the audio distances of each finished run's
best checkpoint on its test split, beside every baseline, as a section of
docs/frontend_study.md.

    python scripts/frontend_study_sound.py [--study logs/frontend_study] \\
        [--markdown docs/frontend_study.md]

Each run's test predictions are rendered with the dataset's synth and each record's true
nuisance and compared with the test notes (src/evaluation/sound.py); a run's result is kept
as `sound.json` in its folder, so a rerun only measures new runs. Rows group a task's runs by
back-end and front-end setting (mean ± std over the seeds that finished).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from src.data.provision import build_datamodule
from src.evaluation.sound import baseline_sound, model_sound
from src.metrics.baselines import BASELINES
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint
from src.paths import PROJECT_ROOT
from src.utils.config import compose_config

from compare_models import cached
from mdreport import machine_line, markdown_table, sound_table, update_section

RUN = re.compile(
    r"^(?P<task>[a-z_]+?)_(?P<backend>[a-z0-9.]+)_(?P<setting>fixed|stft|mel|both)_"
    r"m(?P<mels>\d+)_(?P<init>[a-z]+)_(?P<mask>[a-z0-9-]+)_lr[0-9.e-]+_s(?P<seed>\d+)$"
)


def datamodule(task: str):
    cfg = compose_config("train", [f"data={task}_audio"])
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    dm.setup()
    return dm


def run_sound(run: Path, task: str) -> dict:
    best = sorted((run / "checkpoints").glob("epoch_*.ckpt"))[-1]
    ckpt = read_checkpoint(best)
    dm = datamodule(task)
    dm.load_state_dict(datamodule_state(ckpt, dm))
    dm.setup()
    return model_sound(module_from_checkpoint(ckpt), dm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--study", type=Path, default=PROJECT_ROOT / "logs" / "frontend_study")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for run in sorted(p for p in args.study.iterdir() if p.is_dir()):
        m = RUN.match(run.name)
        if not m or not (run / "metrics.json").exists() or m["mels"] != "40":
            continue
        if m["init"] != "mel" or m["mask"] != "none":
            continue  # the main table's cells only (n_mels 40, mel init, no mask)
        print(run.name, flush=True)
        sound = cached(run / "sound.json", lambda run=run, m=m: run_sound(run, m["task"]))
        groups.setdefault((m["task"], m["backend"], m["setting"]), []).append(sound)
    lines = []
    for task in sorted({t for t, _, _ in groups}):
        base = cached(
            args.study / f"baselines_sound_{task}_audio.json",
            lambda task=task: baseline_sound(datamodule(task)),
        )
        entries = [(b, [base[b]]) for b in BASELINES]
        entries += [
            (f"{backend} {setting} ({len(runs)} seeds)", runs)
            for (t, backend, setting), runs in sorted(groups.items())
            if t == task
        ]
        cols, rows = sound_table(entries)
        lines += [f"### `{task}` by the sound", "", *markdown_table(cols, rows), ""]
    body = "\n".join(
        [
            "Written by `python scripts/frontend_study_sound.py` from the main table's finished "
            f"runs. Machine: {machine_line()}.",
            "",
            "Each run's test predictions rendered with the dataset's synth and each record's "
            "true nuisance, against the test notes (mean and median over the test records; "
            "models: mean ± std over their seeds).",
            "",
            *lines,
        ]
    )
    print(body)
    if args.markdown:
        update_section(args.markdown, "frontend_study_sound", body)


if __name__ == "__main__":
    main()
