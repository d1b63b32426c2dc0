"""Train the codec sizes over several seeds and tabulate them beside the classic codecs.

    python scripts/codec_report.py --models codec_5k codec_fsq_14k codec_24k --seeds 3 \
        --epochs 5 [--markdown docs/codec.md]

Each (model, seed) runs `experiment=codec_tiny` with that model through `src/train.py`'s task
function (the best-validation checkpoint is tested; the per-run codec report is off, since
the baselines do not depend on the model). The baselines (silence, mu-law PCM, downsampling,
MP3 where lameenc is installed, and at each model's bitrate exactly: downsampling + fewer-bit
mu-law, 2-bit ADPCM) are measured once on the same test clips. Reported: weights, nominal kbps,
the entropy-coded kbps (static tables fitted on the training split's codes, applied to the test
codes), codebook usage, SNR, SI-SDR, PSNR, MR-STFT and log-mel distances, STOI (where pystoi
is installed) over the in-distribution test clips, and SNR on the held-out kind of sound, as
mean ± std over seeds; then each model against the classic codecs at exactly its bitrate, a
difference counted only when it is at least 3 standard errors of the model's seed mean. The
rate-distortion figure goes beside the markdown file.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import tempfile
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from src.data.provision import build_datamodule
from src.evaluation.codec_baselines import baselines
from src.evaluation.codec_report import compare_codecs, rate_distortion_figure
from src.metrics import metric_key
from src.metrics.codec import stoi_available
from src.train import train
from src.utils.config import compose_config

from mdreport import machine_line, markdown_table, spread, update_section

QUIET = [
    "callbacks.codec_report=null",
    "callbacks.early_stopping=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "extras.print_config=false",
    "extras.enforce_tags=false",
]
COLUMNS = ("snr_db", "si_sdr_db", "psnr_db", "mrstft", "logmel_db", "stoi")
T_BEATS = 3.0  # standard errors of a model's seed mean a difference needs to count


def run_one(model: str, epochs: int, seed: int, out: Path, extra: list[str]) -> dict:
    overrides = ["experiment=codec_tiny", f"model={model}", f"trainer.max_epochs={epochs}", *extra]
    cfg = compose_config("train", [*overrides, f"seed={seed}", *QUIET], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    metrics, objects = train(cfg)
    module = objects["model"]
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "weights": module.param_counts["total"],
        "kbps": module.net.bitrate_kbps,
        "heldout": [module.group_names[g] for g in module.heldout],
    }


def baseline_rows(stoi: bool, at_kbps: list[float]) -> tuple[list[dict], list[str], dict]:
    """Every baseline's means on the in-distribution test clips and the held-out kind's SNR,
    the held-out kinds, and the test clips counted per source."""
    cfg = compose_config("train", ["experiment=codec_tiny"])
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    x, src = dm.tensors("test")
    held = torch.tensor([dm.source_names[int(s)] in dm.heldout for s in src])
    counts = {
        "seconds": x.shape[-1] / dm.sample_rate,
        "sample_rate": dm.sample_rate,
        "per_source": {n: int((src == g).sum()) for g, n in enumerate(dm.source_names)},
    }
    model = {"name": "identity", "kbps": 0.0}  # placeholder row, dropped below
    systems, _ = compare_codecs(
        x[:, 0], x[:, 0], dm.sample_rate, model, baselines(dm.sample_rate, at_kbps=at_kbps), stoi
    )
    rows = []
    for s, b in zip(systems[1:], baselines(dm.sample_rate, at_kbps=at_kbps), strict=True):
        rows.append(
            {
                "name": s.name,
                "family": s.family,
                "kbps": s.kbps,
                "nominal_kbps": b.kbps,
                "metrics": s.means(~held),
                "heldout_snr": s.means(held)["snr_db"] if held.any() else float("nan"),
            }
        )
    return rows, list(dm.heldout), counts


def run_values(runs: list[dict], name: str, source: str | None = None) -> list[float]:
    """One test metric of every run (NaN where a run lacks it)."""
    return [r["metrics"].get(metric_key("test", name, source), float("nan")) for r in runs]


def cell(values: list[float], fmt: str) -> str:
    values = [v for v in values if v == v]
    return spread(values, fmt) if values else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["codec_5k", "codec_fsq_14k", "codec_24k"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N per model")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="run folders (default: a temp dir)")
    ap.add_argument("--markdown", help="update the results section of this markdown file")
    ap.add_argument("--overrides", nargs="*", default=[], help="more Hydra overrides per run")
    ap.add_argument(
        "--results",
        nargs="*",
        type=Path,
        default=[],
        help="tabulate the runs of these --out folders",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny convolutions: threads only add contention on a shared CPU
    stoi = stoi_available()
    out = args.out or Path(tempfile.mkdtemp(prefix="codec_report_"))
    results: dict[str, list[dict]] = {}
    for folder in args.results:  # runs made by earlier invocations (e.g. one per model)
        results.update(json.loads((folder / "results.json").read_text()))
    for model in [] if args.results else args.models:
        for seed in range(1, args.seeds + 1):
            run = run_one(model, args.epochs, seed, out / f"{model}_seed{seed}", args.overrides)
            results.setdefault(model, []).append(run)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    model_kbps = sorted({runs[0]["kbps"] for runs in results.values()})
    base, heldout, counts = baseline_rows(stoi, model_kbps)
    held_name = "/".join(heldout) or "held-out"

    cols = [
        "codec",
        "weights",
        "kbps",
        "coded kbps",
        "usage",
        "SNR dB",
        "SI-SDR dB",
        "PSNR dB",
        "MR-STFT",
        "log-mel dB",
        "STOI",
        f"SNR dB on {held_name} (held out)",
    ]
    rows, points, errors = [], [], {}
    for model, runs in results.items():
        get = functools.partial(run_values, runs)
        held = [v for h in heldout for v in get("snr_db", h)]
        rows.append(
            [
                f"{model} ({len(runs)} seeds)",
                f"{runs[0]['weights']:,}",
                f"{runs[0]['kbps']:.1f}",
                cell(get("coded_kbps"), ".2f"),
                cell(get("usage"), ".3f"),
                cell(get("snr_db"), ".2f"),
                cell(get("si_sdr_db"), ".2f"),
                cell(get("psnr_db"), ".1f"),
                cell(get("mrstft"), ".2f"),
                cell(get("logmel_db"), ".2f"),
                cell(get("stoi"), ".3f"),
                cell(held, ".2f"),
            ]
        )
        points.append(
            {
                "name": model,
                "family": "model",
                "kbps": runs[0]["kbps"],
                "metrics": {
                    k: statistics.fmean(v) for k in COLUMNS if (v := [x for x in get(k) if x == x])
                },
            }
        )
        errors[model] = {
            k: statistics.stdev(v) for k in COLUMNS if len(v := [x for x in get(k) if x == x]) > 1
        }
    for b in sorted(base, key=lambda b: (b["family"], b["kbps"])):
        mt = b["metrics"]
        rows.append(
            [
                f"{b['name']} ({b['family']})",
                "-",
                f"{b['kbps']:.1f}",
                "-",
                "-",
                f"{mt['snr_db']:.2f}",
                f"{mt['si_sdr_db']:.2f}",
                f"{mt['psnr_db']:.1f}",
                f"{mt['mrstft']:.2f}",
                f"{mt['logmel_db']:.2f}",
                f"{mt['stoi']:.3f}" if "stoi" in mt else "-",
                f"{b['heldout_snr']:.2f}",
            ]
        )
    lines = markdown_table(cols, rows)
    versus = markdown_table(*at_bitrate_rows(results, base))
    print("\n".join([*lines, "", *versus]))
    if args.markdown:
        md = Path(args.markdown)
        figure = md.parent / "figures" / "codec" / "rate_distortion.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        rate_distortion_figure(
            base + points, figure, title=f"codec test set, {machine_line()}", spread=errors
        )
        command = (
            f"python scripts/codec_report.py --models {' '.join(args.models)} "
            f"--seeds {args.seeds} --epochs {args.epochs} --markdown {args.markdown}"
        )
        inside = {n: c for n, c in counts["per_source"].items() if n not in heldout}
        outside = {n: c for n, c in counts["per_source"].items() if n in heldout}
        clips = (
            f"Test clips: {sum(inside.values())} in-distribution ("
            + ", ".join(f"{n} {c}" for n, c in inside.items())
            + f") and {sum(outside.values())} held out ("
            + ", ".join(f"{n} {c}" for n, c in outside.items())
            + f"), each {counts['seconds']:g} s at {counts['sample_rate']:,} Hz."
        )
        body = "\n".join(
            [
                "## Results",
                "",
                f"`{command}`: each model trained {args.epochs} epochs (`experiment=codec_tiny`) "
                f"with seeds 1..{args.seeds}, the best-validation checkpoint tested; mean ± std "
                f"over seeds. Baselines measured once on the same test clips. Means over the "
                f"in-distribution test clips; the last column is the held-out kind. {clips} "
                "kbps: computed from the architecture (models), exact (PCM, downsampling), or "
                "measured from the bytes written (MP3, ADPCM). *coded kbps*: the models' codes "
                "entropy-coded with static per-stage tables fitted on the training clips' codes "
                "(add-one smoothed) and applied to the test clips' codes. *usage*: the share of "
                "codebook entries the test codes use (stage mean). *log-mel dB*: per frame the "
                "RMS over 64 mel bands of the dB difference, averaged over frames.",
                "",
                f"Machine: {machine_line()}.",
                "",
                *lines,
                "",
                f"Each model against the classic codecs at exactly its bitrate (payload bits "
                f"a second; ADPCM's block headers add a little, its measured kbps in the table "
                f"above): the baseline's figure minus the model's seed mean, and t, that gap in "
                f"standard errors of the model's mean; a side is better only at |t| >= "
                f"{T_BEATS:g}.",
                "",
                *versus,
                "",
                f"![rate-distortion](figures/codec/{figure.name})",
            ]
        )
        update_section(md, "codec_report", body)


def compare(model_values: list[float], baseline: float, higher_is_better: bool) -> str:
    """ "<baseline> - <model mean>, t = ..: <verdict>" by the T_BEATS rule."""
    values = [v for v in model_values if v == v]
    gap = baseline - statistics.fmean(values)
    if len(values) < 2:
        return f"{gap:+.2f} (one run)"
    se = statistics.stdev(values) / len(values) ** 0.5
    t = gap / se if se > 0 else math.copysign(math.inf, gap) if gap else 0.0
    baseline_ahead = t >= T_BEATS if higher_is_better else t <= -T_BEATS
    model_ahead = t <= -T_BEATS if higher_is_better else t >= T_BEATS
    word = (
        "baseline better" if baseline_ahead else "model better" if model_ahead else "within noise"
    )
    return f"{gap:+.2f}, t = {t:.1f}: {word}"


def at_bitrate_rows(results: dict[str, list[dict]], base: list[dict]) -> tuple[list, list]:
    """Per model, every baseline whose nominal bitrate is the model's: SNR and log-mel."""
    cols = ["model", "kbps", "baseline", "SNR dB: baseline - model", "log-mel dB: baseline - model"]
    rows = []
    for model, runs in results.items():
        kbps = runs[0]["kbps"]
        for b in base:
            if not math.isclose(b["nominal_kbps"], kbps, rel_tol=1e-9):
                continue
            rows.append(
                [
                    model,
                    f"{kbps:.1f}",
                    f"{b['name']} ({b['family']})",
                    compare(run_values(runs, "snr_db"), b["metrics"]["snr_db"], True),
                    compare(run_values(runs, "logmel_db"), b["metrics"]["logmel_db"], False),
                ]
            )
    return cols, rows


if __name__ == "__main__":
    main()
