"""Measure refinement through the synth against the network alone and against other starts,
in domain (a dataset's test notes) and out of domain (other synths' notes, recorded
instruments); write the tables of docs/sound_matching.md.

    python scripts/sound_matching.py --data saw --epochs 20 --model cnn_12k \\
        --head-mode pitch=offset/other=regression --notes 256 [--ood] [--markdown FILE]

The networks are `scripts/compare_models.py` runs (the same cache: a run that exists is not
trained again), one per seed. For the first `--notes` test notes, each start (each seed's
network, 1-NN on pixels, the train mean) is refined by CMA-ES (any synth) and, where the
synth has a differentiable twin, by gradient descent; each refinement starts its pitch at the
given estimate (`pitch_start=given`), so the table shows what the start is worth; the
network's start is also refined as predict.py does by default ("tracker-aided": the pitch
starts at the network's estimate or the f0 tracker's, whichever renders closer). Every row
is rendered with each record's true nuisance (onset, attack, noise, phases; the refined pitch
is the pitch that sounds, so the record's detune is taken off before rendering) and compared
with the test note. Columns: multi-scale log-mel (MSS) and log-spectral distance (LSD), the
f0 error of the rendering by the tracker, the pitch error in cents against the pitch that
sounds (label + detune), the score (mean skill over heads against the train mean on the same
notes), and the cost (synth renders and milliseconds per note, on this machine).

Out of domain (`--ood`, with the saw networks): FM notes, Karplus-Strong plucks and the
recorded instrument samples of the TimGM6mb SoundFont inside `pretty_midi`, each with a known
pitch; renderings use the estimated onset and attack (none is known) and no noise.
Refinements are cached under `--cache`, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from src.audio.soundfont import bundled_bank
from src.data.provision import build_datamodule
from src.evaluation.resynthesis import error_key, evaluate_resynthesis
from src.evaluation.sound import refined_predictor, test_values
from src.generation.rebuild import renderer_from_info
from src.matching.refine import Refiner, SearchSpace, estimate_onset
from src.matching.sources import fm_notes, plucked_strings, recorded_notes
from src.metrics.audio import AudioComparison
from src.metrics.baselines import datamodule_baseline_values, nearest
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint
from src.paths import PROJECT_ROOT
from src.predict import predict_notes
from src.utils.config import compose_config

from compare_models import beats, cached, cached_run, data_overrides, label
from mdreport import machine_line, markdown_table, spread, update_section

METRICS = ("mss", "lsd_db", "f0_err_cents")


def best_checkpoint(run: Path) -> Path:
    found = sorted((run / "checkpoints").glob("epoch_*.ckpt"))
    if not found:
        raise SystemExit(f"{run}: no best checkpoint")
    return found[-1]


def networks(args, cache: Path) -> list:
    """(module, datamodule) of each seed's run, trained first if the cache lacks it."""
    out = []
    for seed in range(args.seeds):
        cached_run(args.model, args.data, args.epochs, seed, cache, args.size, 1, args.head_mode)
        ckpt = read_checkpoint(
            best_checkpoint(cache / f"{label(args.model, args.head_mode)}_{seed}")
        )
        cfg = compose_config("train", data_overrides(args.data, args.size))
        dm = build_datamodule(cfg.data, cfg.paths.data_dir)
        dm.load_state_dict(datamodule_state(ckpt, dm))
        dm.setup()
        out.append((module_from_checkpoint(ckpt), dm))
    return out


def refiners(args, space: SearchSpace) -> dict[str, Refiner]:
    found = {"CMA-ES": Refiner(method="cmaes", generations=args.generations, pitch_start="given")}
    if space.differentiable() is not None:
        found["gradient"] = Refiner(method="gradient", steps=args.steps, pitch_start="given")
    # What predict.py does by default: the pitch starts at the given estimate or the f0
    # tracker's, whichever renders closer (in domain from the network's start only).
    found["CMA-ES, tracker-aided"] = Refiner(
        method="cmaes", generations=args.generations, pitch_start="best"
    )
    return found


def wanted(start: str, method: str) -> bool:
    return "tracker" not in method or start.startswith("network")


def as_lists(values: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64).tolist() for k, v in values.items()}


def in_domain(args, nets, cache: Path) -> tuple[list, list]:
    dm = nets[0][1]
    dataset, split = dm.dataset, dm.files["test"]
    dr = renderer_from_info(dataset.info)
    n = min(args.notes, len(dataset[split]))
    space = SearchSpace.of_renderer(dr.renderer)
    methods = refiners(args, space)
    base = datamodule_baseline_values(dm)
    starts = {f"network#{s}": test_values(m, d) for s, (m, d) in enumerate(nets)}
    starts["1-NN"], starts["train mean"] = base["nn_pixels"], base["train_mean"]
    starts = {k: {h: np.asarray(v)[:n] for h, v in vals.items()} for k, vals in starts.items()}
    predictors = {**starts, "oracle_class": {h: v[:n] for h, v in base["oracle_class"].items()}}
    cost = {}
    for start, values in starts.items():
        for method, refiner in methods.items():
            if not wanted(start, method):
                continue
            name = f"{start} + {method}"

            def make(values=values, refiner=refiner):
                torch.set_num_threads(args.threads)
                began = time.perf_counter()
                vals, result = refined_predictor(dataset, split, values, refiner, dr)
                return {
                    "values": as_lists(vals),
                    "renders_per_note": result.renders_per_note,
                    "ms_per_note": 1000 * (time.perf_counter() - began) / n,
                }

            tag = f"{n}n_{args.generations}g_{args.steps}s"
            done = cached(cache / f"{name.replace(' ', '_').replace('#', 's')}_{tag}.json", make)
            predictors[name] = {k: np.array(v) for k, v in done["values"].items()}
            cost[name] = done
            print(f"{name}: {done['ms_per_note']:.0f} ms/note", flush=True)
    result = evaluate_resynthesis(dataset, predictors, split=split, n_listen=0, renderer=dr)
    summary = result.summary()
    heads = [p.name for p in dataset.params]
    ref = {h: summary["train mean"][error_key(h)]["mean"] for h in heads}

    def cells(name: str) -> dict:
        s = summary[name]
        row = {f"{m}/{q}": s[m][q] for m in METRICS for q in ("mean", "median")}
        row["pitch_cents/mean"] = 100 * s[error_key("pitch")]["mean"] if "pitch" in heads else None
        row["pitch_cents/median"] = (
            100 * s[error_key("pitch")]["median"] if "pitch" in heads else None
        )
        row["score"] = statistics.fmean(1 - s[error_key(h)]["mean"] / ref[h] for h in heads)
        row["renders"] = cost.get(name, {}).get("renders_per_note", 0.0)
        row["ms"] = cost.get(name, {}).get("ms_per_note", 0.0)
        return row

    groups: dict[str, list[dict]] = {}
    for name in predictors:
        groups.setdefault(re.sub(r"#\d+", "", name), []).append(cells(name))
    return table(groups), [n], groups


def checks(groups: dict[str, list[dict]]) -> list[str]:
    """The statements under the in-domain table, computed (`compare_models.beats`: 3 standard
    errors over the network's seeds; the other starts are single runs, taken as references)."""
    lines = []
    nn_rows = [g for g in groups if g.startswith("1-NN")]
    for name, runs in groups.items():
        if not name.startswith("network"):
            continue
        won = []
        for metric, label_ in (("mss/median", "MSS"), ("lsd_db/median", "LSD")):
            ref = min(groups[g][0][metric] for g in nn_rows)
            ok = beats([r[metric] for r in runs], ref, lower_is_better=True)
            won.append(f"{label_} {'yes' if ok else 'no'}")
        cents = [r["pitch_cents/mean"] for r in runs if r.get("pitch_cents/mean") is not None]
        pitch = (
            f"; mean pitch error {statistics.fmean(cents):.3g} cents "
            f"({'under' if max(cents) < 10 else 'not under'} 10 cents in every seed)"
            if cents
            else ""
        )
        lines.append(
            f"- `{name}` closer to the notes than the best 1-NN row (with or without "
            f"refinement) by the median: {', '.join(won)}{pitch}."
        )
    return lines


def table(groups: dict[str, list[dict]]):
    cols = [
        "start + refinement",
        "MSS mean",
        "MSS median",
        "LSD mean",
        "LSD median",
        "f0 err median (cents, tracker)",
        "pitch err mean (cents)",
        "pitch err median (cents)",
        "score",
        "renders / note",
        "ms / note",
    ]
    rows = []
    for name, runs in groups.items():

        def c(key, fmt, runs=runs):
            vals = [r[key] for r in runs if r.get(key) is not None]
            return spread(vals, fmt) if vals else "-"

        rows.append(
            [
                name,
                c("mss/mean", ".3f"),
                c("mss/median", ".3f"),
                c("lsd_db/mean", ".2f"),
                c("lsd_db/median", ".2f"),
                c("f0_err_cents/median", ".3g"),
                c("pitch_cents/mean", ".3g"),
                c("pitch_cents/median", ".3g"),
                c("score", ".3f"),
                c("renders", ".0f"),
                c("ms", ".0f"),
            ]
        )
    return cols, rows


def out_of_domain(args, nets, cache: Path):
    """The OOD rows per source: network, 1-NN, train mean, each alone and refined."""
    dm = nets[0][1]
    dr = renderer_from_info(dm.dataset.info)
    space = SearchSpace.of_renderer(dr.renderer)
    sr, n_samples = space.sample_rate, space.n_samples
    pitch_spec = next(s for s in space.specs if s.name == "pitch")
    lo, hi = pitch_spec.min, pitch_spec.max
    sources = {
        "FM notes": fm_notes(args.ood_notes, sr, n_samples, pitch=(max(lo, 45), min(hi, 69))),
        "plucked strings": plucked_strings(args.ood_notes, sr, n_samples, pitch=(lo + 4, hi - 8)),
    }
    bank, dropped = bundled_bank(), 0
    if bank is not None:
        audio, labels, names, dropped = recorded_notes(bank, sr, n_samples, pitch=(lo, hi))
        sources["recorded (TimGM6mb)"] = (audio, labels, names)
    train_images, train_codes = dm.tensors("train")
    train_values = np.stack(
        [s.decode(train_codes[:, i].numpy()) for i, s in enumerate(dm.heads)], axis=1
    )
    sections = {}
    for source, (audio, labels, _) in sources.items():
        audio = audio.float()
        onset = estimate_onset(audio, sr).numpy()
        starts = {}
        for s, (model, d) in enumerate(nets):
            preds = predict_notes(model, d, dr.imager, audio, 256)
            starts[f"network#{s}"] = {h: v[0].numpy() for h, v in preds.items()}
        images = dr.imager(audio)
        idx = nearest(train_images, images)
        starts["1-NN"] = {s.name: train_values[idx, i] for i, s in enumerate(dm.heads)}
        mean = train_values.mean(axis=0)
        starts["train mean"] = {
            s.name: np.full(len(audio), mean[i]) for i, s in enumerate(dm.heads)
        }
        rows_by: dict[str, list[dict]] = {}
        compare = AudioComparison(audio, sr, metrics=METRICS)
        for start, values in starts.items():
            u = space.encode(values, onset, None)
            variants = {start: (u, {k: np.asarray(v) for k, v in values.items()}, None)}
            for method, refiner in refiners(args, space).items():
                key = (
                    f"ood_{source}_{start}_{method}_{len(audio)}n_{args.generations}g_{args.steps}s"
                )
                key = key.replace(" ", "_").replace("#", "s").replace("(", "").replace(")", "")

                def make(values=values, refiner=refiner, audio=audio):
                    torch.set_num_threads(args.threads)
                    began = time.perf_counter()
                    r = refiner.refine_values(space, audio, values)
                    return {
                        "unit": r.unit.tolist(),
                        "values": as_lists(r.values),
                        "renders_per_note": r.renders_per_note,
                        "ms_per_note": 1000 * (time.perf_counter() - began) / len(audio),
                    }

                done = cached(cache / f"{key}.json", make)
                variants[f"{start} + {method}"] = (
                    torch.tensor(done["unit"], dtype=torch.float64),
                    {k: np.array(v) for k, v in done["values"].items()},
                    done,
                )
            for name, (unit, vals, done) in variants.items():
                with torch.no_grad():
                    m = compare(space.render(unit))
                err = 100 * np.abs(vals["pitch"] - labels)
                rows_by.setdefault(re.sub(r"#\d+", "", name), []).append(
                    {
                        **{f"{k}/median": float(v.double().nanmedian()) for k, v in m.items()},
                        "pitch_cents/median": float(np.median(err)),
                        "pitch_cents/mean": float(err.mean()),
                        "within30": float((err < 30).mean()),
                        "renders": (done or {}).get("renders_per_note", 0.0),
                        "ms": (done or {}).get("ms_per_note", 0.0),
                    }
                )
        cols = [
            "start + refinement",
            "MSS median",
            "LSD median",
            "f0 err median (cents, tracker)",
            "pitch err median (cents)",
            "pitch err mean (cents)",
            "within 30 cents",
            "renders / note",
            "ms / note",
        ]
        rows = []
        for name, runs in rows_by.items():

            def c(key, fmt, runs=runs):
                return spread([r[key] for r in runs], fmt)

            rows.append(
                [
                    name,
                    c("mss/median", ".3f"),
                    c("lsd_db/median", ".2f"),
                    c("f0_err_cents/median", ".3g"),
                    c("pitch_cents/median", ".3g"),
                    c("pitch_cents/mean", ".3g"),
                    c("within30", ".2f"),
                    c("renders", ".0f"),
                    c("ms", ".0f"),
                ]
            )
        sections[source] = (len(audio), cols, rows)
    return sections, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="saw")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--size", type=int)
    ap.add_argument("--model", default="cnn_12k")
    ap.add_argument("--head-mode", default=None, help="as compare_models --head-modes (one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--notes", type=int, default=256, help="first N test notes")
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ood", action="store_true", help="also the out-of-domain table")
    ap.add_argument("--ood-notes", type=int, default=32)
    ap.add_argument("--markdown")
    ap.add_argument("--cache", type=Path, default=PROJECT_ROOT / "logs" / "compare_models")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache / f"{args.data}_{args.size or 'recipe'}_{args.epochs}ep"
    cache.mkdir(parents=True, exist_ok=True)
    refine_cache = cache / "sound_matching"
    refine_cache.mkdir(exist_ok=True)
    nets = networks(args, cache)
    command = (
        f"python scripts/sound_matching.py --data {args.data} --epochs {args.epochs}"
        + (f" --size {args.size}" if args.size else "")
        + f" --model {args.model}"
        + (f" --head-mode {args.head_mode}" if args.head_mode else "")
        + f" --seeds {args.seeds} --notes {args.notes} --generations {args.generations}"
        + f" --steps {args.steps}"
        + (f" --ood --ood-notes {args.ood_notes}" if args.ood else "")
    )
    started = time.perf_counter()
    (cols, rows), (n,), groups = in_domain(args, nets, refine_cache)
    lines = [
        f"## `{args.data}`: {label(args.model, args.head_mode)}, {args.epochs} epochs, "
        f"{args.seeds} seeds, the first {n} test notes",
        "",
        f"`{command}`",
        "",
        f"Machine: {machine_line()}.",
        "",
        *markdown_table(cols, rows),
        "",
        "Computed from the table (3 standard errors over the network's seeds):",
        "",
        *checks(groups),
    ]
    print("\n".join(lines), flush=True)
    if args.markdown:
        update_section(args.markdown, f"sound_matching_{args.data}", "\n".join(lines))
    if args.ood:
        sections, dropped = out_of_domain(args, nets, refine_cache)
        ood = [
            f"## Out of domain: {label(args.model, args.head_mode)} trained on `{args.data}`",
            "",
            f"`{command}`",
            "",
        ]
        for source, (count, c, r) in sections.items():
            ood += [f"### {source} ({count} notes)", "", *markdown_table(c, r), ""]
        ood.append(
            f"Recorded samples left out because the f0 tracker disagreed with the pitch their "
            f"header states by more than 30 cents: {dropped}."
        )
        print("\n".join(ood), flush=True)
        if args.markdown:
            update_section(args.markdown, "sound_matching_ood", "\n".join(ood))
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
