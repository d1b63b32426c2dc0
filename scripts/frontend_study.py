"""The front-end study: do a trainable STFT and mel filterbank help, and when? One command runs
the grid, collects it and writes docs/frontend_study.md with its figures:

    nice -n 10 python scripts/frontend_study.py [--workers 1] [--out logs/frontend_study]

Every job is `src/train.py`'s task function on a `data=<task>_audio` dataset with a
`stft_*` model, the same step budget for all (BUDGET), its run folder
`<out>/<job name>/` laid out like a Hydra multirun job (`.hydra/overrides.yaml`,
`metrics.json`), so `scripts/collect_runs.py <out>` reads it too. A job whose `metrics.json`
exists is not run again: an interrupted study continues where it stopped, and `--report-only`
rewrites the doc from the finished runs. The grid (`grid_why` says which subset and why, with
figures measured from the runs) is in `jobs()`; the analysis is
`src/evaluation/frontend_study.py`, the report `scripts/frontend_study_report.py`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from rich.console import Console

from src.evaluation.frontend_study import SETTINGS, VAL_SCORE, Config, Run
from src.paths import PROJECT_ROOT

from collect_runs import read_multirun

SEEDS = (0, 1, 2)
TASKS = {"saw": "saw_audio", "moog_hard": "moog_hard_audio"}
# Every run: 6 epochs of 32 batches of 128 notes, validation on the whole val split each
# epoch, the best epoch tested.
BUDGET = {"trainer.max_epochs": 6, "trainer.limit_train_batches": 32}


@dataclass(frozen=True)
class Backend:
    model: str  # configs/model/<model>.yaml
    overrides: tuple[str, ...]
    family: str
    label: str


BACKENDS = {
    "linear": Backend("stft_linear_301k", (), "linear", "linear (heads on the log-mel)"),
    "bc0.5": Backend(
        "stft_bcresnet_81k", ("model.net.backend.tau=0.5",), "bcresnet", "BC-ResNet-0.5"
    ),
    "cnn5k": Backend("stft_cnn_77k", (), "cnn", "ConvNet [8,16,24]"),
    "cnn80k": Backend(
        "stft_cnn_77k",
        ("model.net.backend.channels=[16,32,64,96]",),
        "cnn",
        "ConvNet [16,32,64,96]",
    ),
}
FAMILIES = {name: b.family for name, b in BACKENDS.items()}
SWEEP_TASK, SWEEP_BACKEND = "saw", "cnn5k"
N_MELS, INITS = (10, 40), ("mel", "random")
# One front-end learning rate for every back-end, so gains compare across back-ends (the model
# configs' own is a tenth of each back-end's, which differ between back-ends).
LR = 0.003
# The hard Moog task's cutoff head: its labelled range, MIDI 48..84 = 131..1047 Hz, covers STFT
# bins 4..34 (31.25 Hz apart at n_fft 256, 8 kHz).
MASK_TASK, MASK_HEAD, MASK = "moog_hard", "cutoff", (4, 35)
MASK_BACKENDS = ("linear", "cnn5k")  # the first: the figure's runs and the probes' front-end
# The claims are decided on the task that has the settings x back-ends table.
CLAIM_TASKS = ("saw",)
MASKED = "-".join(map(str, MASK))


def cells_in_order() -> list[Config]:
    """The grid's cells, the ones that decide the claims first (a study cut short by its time
    budget keeps the most important cells; the report says which are missing)."""
    t, b, fb = SWEEP_TASK, SWEEP_BACKEND, ("fixed", "both")

    def masked(backend: str, settings) -> list[Config]:  # each with and without the mask
        return [Config(MASK_TASK, backend, s, mask=m) for s in settings for m in ("none", MASKED)]

    return list(
        dict.fromkeys(
            [
                *(Config(t, be, s) for be in ("linear", "cnn5k") for s in SETTINGS),
                *masked("cnn5k", fb),
                *(Config(t, "cnn80k", s) for s in fb),
                *masked("linear", fb),
                *(Config(t, b, s, n_mels=10) for s in fb),
                *(Config(t, b, s, mel_init="random") for s in fb),
                *(Config(t, "cnn80k", s) for s in SETTINGS),
                *(Config(t, "bc0.5", s) for s in SETTINGS),
                *(Config(t, b, s, n_mels=10) for s in SETTINGS),
                *(Config(t, b, s, mel_init="random") for s in SETTINGS),
                *masked("linear", SETTINGS),
            ]
        )
    )


# The cross product the issue names: settings x inits x n_mels x back-ends x tasks x seeds.
FULL_GRID = {"settings": 4, "inits": 3, "n_mels": 3, "back-ends": 5, "tasks": 2, "seeds": 3}


def grid_why(facts: dict) -> str:
    """Which subset of the grid runs and why. Measured facts come from `facts` (computed by
    `study_facts` from the runs and the data; a missing one is left unsaid, never typed)."""
    full = math.prod(FULL_GRID.values())
    minutes = facts.get("minutes")
    took = (
        f": the runs here took {minutes[0]:.0f} to {minutes[1]:.0f} minutes each at low "
        "priority beside other jobs"
        if minutes
        else ""
    )
    slow = facts.get("slowest")
    slowest = (
        f"; at a median {slow[1]:.0f} minutes a run, the slowest back-end on this CPU"
        if slow and slow[0] == "bc0.5"
        else ""
    )
    notes = BUDGET["trainer.max_epochs"] * BUDGET["trainer.limit_train_batches"] * 128
    n_train = facts.get("train_records")
    passes = (
        f" ({notes / n_train:.1f} passes over the {n_train:,} training notes)" if n_train else ""
    )
    lrs = facts.get("config_frontend_lrs")
    own = f" ({', '.join(f'{v:g}' for v in lrs)})" if lrs else ""
    return f"""\
The full cross product the issue names ({" x ".join(f"{v} {k}" for k, v in FULL_GRID.items())}
= {full:,} runs) does not fit a shared 2-core CPU{took}. So the study runs the cells that
decide the claims, in this order of priority (`cells_in_order()` in
`scripts/frontend_study.py`; cells listed below as missing were not run):

1. **Settings x back-ends** on the default task ({SWEEP_TASK}) at n_mels 40 with the mel init,
   for the linear back-end (heads on the log-mel) and the ConvNet at about 5k back-end
   parameters, then the ConvNet at about 80k with `fixed` and `both` (a back-end of a few
   thousand plus a trainable STFT has about 80k trainable parameters: this is the
   matched-parameter comparison), then its other two settings, then BC-ResNet-0.5 (the seed
   paper's back-end family{slowest}; it comes last). The claims are decided on this table.
2. **Mask-out** of the {MASK_HEAD} range (STFT bins [{MASK[0]}, {MASK[1]})) on the {MASK_TASK}
   task, `fixed` and `both`, each with and without the mask (the unmasked runs are the
   reference for what the mask costs): first with the 5k ConvNet, then, because that one
   learns almost nothing of this task in the budget (so the mask has nothing to take away),
   with the linear back-end; then the linear back-end's other two settings.
3. **n_mels {{10, 40}} and init {{mel, random}}** on {SWEEP_TASK} with {SWEEP_BACKEND} (a small
   back-end, where the claimed gain is largest), `fixed` and `both` first, then the other two.

Left out entirely: the hard Moog task's settings x back-ends table (only the mask-out's
back-ends ran there, with two settings, so the claims are not decided on it), BC-ResNet-1,
n_mels 20, the linear init and a front-end learning-rate sweep.

Every cell has {len(SEEDS)} seeds (the seed sets the weights, the data order and a random
filterbank). The budget is short and the same for every run: \
{BUDGET["trainer.max_epochs"]} epochs of {BUDGET["trainer.limit_train_batches"]} batches of 128
notes{passes}; the best validation epoch is tested on the whole test split. The front-end learns
at {LR:g} with every back-end (the model configs give it a tenth of each back-end's
rate{own}, which differ between back-ends and barely move it in this budget)."""


def study_facts(runs: list[Run], out: Path) -> dict:
    """What `grid_why` states, measured: minutes per finished run (first to last), the slowest
    back-end's median, the default task's training notes, the model configs' front-end rates."""
    from omegaconf import OmegaConf

    from src.paths import CONFIG_DIR

    per_run, by_backend = [], {}
    for r in runs:
        job = Path(r.output_dir)
        done, begun = job / "metrics.json", job / ".hydra" / "overrides.yaml"
        if done.is_file() and begun.is_file():
            minutes = (done.stat().st_mtime - begun.stat().st_mtime) / 60
            per_run.append(minutes)
            by_backend.setdefault(r.config.backend, []).append(minutes)
    facts: dict = {}
    if per_run:
        facts["minutes"] = (min(per_run), max(per_run))
        medians = {b: statistics.median(v) for b, v in by_backend.items()}
        slowest = max(medians, key=medians.get)
        facts["slowest"] = (slowest, medians[slowest])
    facts["train_records"] = cached(
        out / f"train_records_{TASKS[SWEEP_TASK]}.json",
        lambda: {"n": train_records(TASKS[SWEEP_TASK])},
    )["n"]
    lrs = {
        float(OmegaConf.load(CONFIG_DIR / "model" / f"{b.model}.yaml").net.frontend.lr)
        for b in BACKENDS.values()
    }
    facts["config_frontend_lrs"] = sorted(lrs, reverse=True)
    return facts


def train_records(data: str) -> int:
    """Training notes the default task's runs draw from (after the validation carve)."""
    _, dm = datamodule(data)
    return dm.num_records("train")  # reads no record


def best_val_score(job: Path) -> float | None:
    """The best epoch's val/score in a job's CSV log: the tested checkpoint's (the checkpoint
    callback keeps the epoch of the highest val/score)."""
    for path in sorted(job.glob("csv/*/metrics.csv")):
        with open(path, newline="") as f:
            scores = [float(r["val/score"]) for r in csv.DictReader(f) if r.get("val/score")]
        scores = [v for v in scores if math.isfinite(v)]
        if scores:
            return max(scores)
    return None


QUIET = [
    "callbacks=frontend",
    "callbacks.filterbank_plot=null",
    "callbacks.early_stopping=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.lr_monitor=null",
    "extras.print_config=false",
    "extras.enforce_tags=false",
]


def mask_text(mask: tuple[int, int] | None) -> str:
    return "none" if mask is None else f"{mask[0]}-{mask[1]}"


def job_name(cfg: Config, seed: int) -> str:
    return (
        f"{cfg.task}_{cfg.backend}_{cfg.setting}_m{cfg.n_mels}_{cfg.mel_init}_{cfg.mask}"
        f"_lr{cfg.lr:g}_s{seed}"
    )


def overrides(cfg: Config, seed: int) -> list[str]:
    """The train overrides of one job; the `+study.*` keys name its cell for the collector."""
    b = BACKENDS[cfg.backend]
    stft, mel = SETTINGS[cfg.setting]
    mask = "null" if cfg.mask == "none" else "[" + cfg.mask.replace("-", ",") + "]"
    fe = "model.net.frontend"
    return [
        f"data={TASKS[cfg.task]}",
        f"model={b.model}",
        *b.overrides,
        f"{fe}.trainable_stft={str(stft).lower()}",
        f"{fe}.trainable_mel={str(mel).lower()}",
        f"{fe}.n_mels={cfg.n_mels}",
        f"{fe}.mel_init={cfg.mel_init}",
        f"{fe}.maskout={mask}",
        f"{fe}.lr={cfg.lr}",
        f"seed={seed}",
        *(f"++{k}={v}" for k, v in BUDGET.items()),
        *QUIET,
        f"+study.task={cfg.task}",
        f"+study.backend={cfg.backend}",
        f"+study.setting={cfg.setting}",
    ]


def jobs() -> list[tuple[Config, int]]:
    """The study's grid (see `grid_why`), each (cell, seed) once, in order of priority."""
    return [(c, seed) for c in cells_in_order() for seed in SEEDS]


def run_job(cfg: Config, seed: int, root: str) -> tuple[str, str]:
    """Train and test one job in its folder (a worker process); (name, outcome)."""
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from src.train import train
    from src.utils.config import compose_config

    torch.set_num_threads(1)
    name = job_name(cfg, seed)
    out = Path(root) / name
    if (out / "metrics.json").is_file():
        return name, "done before"
    if out.exists():  # an interrupted job: start it again
        shutil.rmtree(out)
    over = overrides(cfg, seed)
    composed = compose_config("train", over, return_hydra_config=True)
    HydraConfig().set_config(composed)
    with open_dict(composed):
        composed.paths.output_dir = str(out)
    hydra_dir = out / ".hydra"
    hydra_dir.mkdir(parents=True)
    plain = OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"])
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in over))
    try:
        train(composed)
    except Exception as e:  # one failed job must not stop the study; the report counts it
        return name, f"failed: {type(e).__name__}: {e}"
    return name, "ran"


def run_all(todo: list[tuple[Config, int]], root: Path, workers: int) -> list[str]:
    """Run the jobs (`workers` processes, one thread each); the names of the failed ones."""
    console, failed = Console(), []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, c, s, str(root)) for c, s in todo]
        for i, f in enumerate(as_completed(futures), 1):
            name, outcome = f.result()
            console.print(f"[{i}/{len(todo)}] {name}: {outcome}")
            if outcome.startswith("failed"):
                failed.append(name)
    return failed


def collect(root: Path) -> list[Run]:
    """The finished and failed jobs of a study folder as Runs (via collect_runs)."""
    rows, _, _ = read_multirun(root)
    runs = []
    for r in rows:
        o = r["overrides"]
        if "study.task" not in o:
            raise SystemExit(f"{r['output_dir']}: not a front-end study job (no +study.* keys)")
        mask = o.get("model.net.frontend.maskout", "null")
        mask = "none" if mask in ("null", None) else "-".join(re.findall(r"\d+", str(mask)))
        cfg = Config(
            task=str(o["study.task"]),
            backend=str(o["study.backend"]),
            setting=str(o["study.setting"]),
            n_mels=int(o["model.net.frontend.n_mels"]),
            mel_init=str(o["model.net.frontend.mel_init"]),
            mask=mask,
            lr=float(o["model.net.frontend.lr"]),
        )
        metrics = dict(r["metrics"])
        best = best_val_score(Path(r["output_dir"])) if metrics else None
        if best is not None:
            metrics[VAL_SCORE] = best
        runs.append(Run(cfg, int(o["seed"]), metrics, r["output_dir"]))
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "logs" / "frontend_study")
    ap.add_argument("--workers", type=int, default=1, help="jobs at once (one thread each)")
    ap.add_argument("--only", help="run only the jobs whose name matches (a regex); no report")
    ap.add_argument("--list", action="store_true", help="list the jobs and their state, run none")
    ap.add_argument("--report-only", action="store_true", help="write the doc from finished runs")
    ap.add_argument("--markdown", type=Path, default=PROJECT_ROOT / "docs" / "frontend_study.md")
    ap.add_argument("--figures", type=Path, default=PROJECT_ROOT / "docs" / "figures" / "frontend")
    args = ap.parse_args(argv)
    todo = [(c, s) for c, s in jobs() if not args.only or re.search(args.only, job_name(c, s))]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.list:
        for c, s in todo:
            done = (args.out / job_name(c, s) / "metrics.json").is_file()
            print(f"{'done' if done else 'todo'}  {job_name(c, s)}")
        return 0
    if not args.report_only:
        for task in sorted({c.task for c, _ in todo}):  # generate each dataset once, up front
            prepare(task)
        failed = run_all(todo, args.out, args.workers)
        if failed:
            Console().print(f"[red]{len(failed)} jobs failed[/]: " + ", ".join(failed))
    if args.only and not args.report_only:
        return 0
    from frontend_study_report import write_report

    runs = collect(args.out)
    ctx = context()
    ctx["why"] = grid_why(study_facts(runs, args.out))
    ran = {r.config for r in runs if r.metrics}
    # Baselines and probes only for what ran (each may generate a dataset first).
    tasks = {c.task for c in ran}
    ctx["baselines"] = {t: baselines(data, args.out) for t, data in TASKS.items() if t in tasks}
    ctx["probes"] = None
    if any(c.task == MASK_TASK and c.mask == MASKED for c in ran):
        model = BACKENDS[MASK_BACKENDS[0]].model
        ctx["probes"] = {
            "full": probes(TASKS[MASK_TASK], model, None, args.out),
            "masked": probes(TASKS[MASK_TASK], model, MASK, args.out),
        }
    write_report(runs, args.markdown, args.figures, ctx)
    return 0


def prepare(task: str) -> None:
    """Generate the task's dataset (if missing) in this process, before the workers start."""
    datamodule(TASKS[task])


def cached(path: Path, compute) -> dict:
    """A JSON result computed once per study folder (written atomically)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)
    return value


def datamodule(data: str, overrides: tuple[str, ...] = ()):
    from src.data.provision import build_datamodule
    from src.utils.config import compose_config

    cfg = compose_config("train", [f"data={data}", *overrides])
    return cfg, build_datamodule(cfg.data, cfg.paths.data_dir)


def baselines(data: str, out: Path) -> dict:
    from src.metrics.baselines import datamodule_baselines

    return cached(out / f"baselines_{data}.json", lambda: datamodule_baselines(datamodule(data)[1]))


def probes(data: str, model: str, mask: tuple[int, int] | None, out: Path) -> dict:
    """1-NN and ridge probes on a fixed front-end's output (the model config's), masked or not."""

    def compute() -> dict:
        from hydra.utils import instantiate

        from src.evaluation.probe import probe_frontend

        masked = "null" if mask is None else f"[{mask[0]},{mask[1]}]"
        cfg, dm = datamodule(data, (f"model={model}", f"model.net.frontend.maskout={masked}"))
        frontend = instantiate(cfg.model.net.frontend, sample_rate=dm.spec.sample_rate)
        return probe_frontend(frontend, dm)

    tag = "none" if mask is None else f"{mask[0]}-{mask[1]}"
    return cached(out / f"probe_{data}_{tag}.json", compute)


def context() -> dict:
    """The study's design facts the report states."""
    return {
        "tasks": TASKS,
        "backends": BACKENDS,
        "families": FAMILIES,
        "seeds": SEEDS,
        "budget": BUDGET,
        "why": grid_why({}),
        "sweep": (SWEEP_TASK, SWEEP_BACKEND),
        "n_mels": N_MELS,
        "inits": INITS,
        "mask": (MASK_TASK, MASK_HEAD, MASK, MASK_BACKENDS),
        "claim_tasks": CLAIM_TASKS,
        "command": "nice -n 10 python scripts/frontend_study.py",
        "n_jobs": len(jobs()),
        "cells": cells_in_order(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
