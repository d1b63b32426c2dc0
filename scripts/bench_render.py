"""Rendering for evaluation: how fast predictions are heard, per synth.

python scripts/bench_render.py [--size N] [--synths saw moog fm] [--threads 1] [--markdown PATH]

For each synth a dataset of --size records is generated (the default recipe otherwise), then
on its test split: the records/s of rendering predicted values with each record's own
nuisance (`DatasetRenderer.render_records`, what resynthesis evaluation and predict.py do),
the wall time of the whole resynthesis evaluation with audio distances
(`evaluate_resynthesis`, one predictor plus the oracle), and the renders/s of one CMA-ES
refinement generation (`refine_cmaes`, population rendered and scored against the notes).
The Moog is measured with its compiled ladder and with the torch loop, interleaved in one
process (medians of --repeats), so the ratio holds even on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from src.data.vimh import VIMHDataset
from src.evaluation.resynthesis import evaluate_resynthesis
from src.generate import generate_dataset
from src.generation.rebuild import renderer_from_info
from src.matching.refine import SearchSpace, estimate_onset, refine_cmaes
from src.utils.config import compose_config

from mdreport import load_note, machine_line, target_status, update_section

EVAL_TARGET_S = 60.0  # issue 28: a test split's evaluation with audio distances in seconds
REFINE_NOTES = 64  # notes refined together in the refinement timing


def make_dataset(synth: str, size: int, out: Path) -> VIMHDataset:
    cfg = compose_config(
        "generate",
        [
            f"synth={synth}",
            f"dataset.size={size}",
            f"dataset.out_dir={out}",
            f"dataset.name={synth}",
            "identifiability.enabled=false",
        ],
    )
    return VIMHDataset(generate_dataset(cfg))


def seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ladders(synth: str) -> list[str]:
    """The sample-loop variants measured: the Moog's two, one (the default) otherwise."""
    return ["compiled", "torch loop"] if synth.startswith("moog") else ["default"]


def use_ladder(variant: str) -> None:
    """Select the Moog ladder for the following renders (src/synth/ladder_kernel.py)."""
    os.environ["NSM_LADDER"] = "torch" if variant == "torch loop" else ""


def measure(synth: str, size: int, repeats: int, out: Path) -> list[dict]:
    ds = make_dataset(synth, size, out)
    dr = renderer_from_info(ds.info)
    test = ds["test"]
    n = len(test)
    true = {p.name: test.values()[:, i] for i, p in enumerate(ds.params)}
    k = min(REFINE_NOTES, n)
    target = dr.render_records("test", {h: v[:k] for h, v in true.items()})
    space = SearchSpace.of_renderer(dr.renderer)
    start = space.encode(
        {h: v[:k] for h, v in true.items()}, estimate_onset(target, dr.sample_rate).numpy(), None
    )
    variants = ladders(synth)
    render: dict[str, list[float]] = {v: [] for v in variants}
    refine: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:  # interleaved: drift of the machine's load hits every variant alike
            use_ladder(v)
            render[v].append(n / seconds(lambda: dr.render_records("test", true)))
            result = {}

            def one_generation(result=result) -> None:
                result["r"] = refine_cmaes(space, target, start, generations=1)

            t = seconds(one_generation)
            refine[v].append(result["r"].renders / t)
    use_ladder(variants[0])
    res = {}
    eval_s = seconds(lambda: res.setdefault("r", evaluate_resynthesis(ds, {"truth": true})))
    rows = []
    for v in variants:
        rows.append(
            {
                "synth": synth,
                "ladder": v,
                "records": n,
                "render": statistics.median(render[v]),
                "refine": statistics.median(refine[v]),
                "eval_s": eval_s if v == variants[0] else None,
                "predictors": len(res["r"].values),
            }
        )
    use_ladder("compiled")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=16384, help="dataset records (test split 10%%)")
    ap.add_argument("--synths", nargs="+", default=["saw", "moog", "fm"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", help="update the rendering section of this markdown file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for synth in args.synths:
            rows += measure(synth, args.size, args.repeats, Path(tmp))

    def cells(r: dict) -> list[str]:
        ev = r["eval_s"]
        eval_cells = (
            ["-", "-"]
            if ev is None
            else [f"{ev:.1f} s", target_status(ev, EVAL_TARGET_S, at_least=False)]
        )
        return [
            r["synth"],
            r["ladder"],
            str(r["records"]),
            f"{r['render']:,.0f}",
            f"{r['refine']:,.0f}",
            *eval_cells,
        ]

    cols = [
        "synth",
        "sample loop",
        "test records",
        "render records/s",
        "refinement renders/s",
        "evaluation",
        f"<= {EVAL_TARGET_S:.0f} s",
    ]
    table = Table(title="Rendering for evaluation (test split, 1 s notes at 8 kHz)")
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*cells(r))
    Console().print(table)
    if args.markdown:
        lines = [
            "## Rendering for evaluation",
            "",
            f"`python scripts/bench_render.py --markdown docs/performance.md`: per synth, a "
            f"dataset of {args.size} records (default recipe), and on its test split: "
            "*render records/s*, predicted values rendered with each record's own nuisance "
            "(`DatasetRenderer.render_records`, as resynthesis evaluation and predict.py do); "
            f"*refinement renders/s*, one CMA-ES generation for {REFINE_NOTES} notes "
            "(`refine_cmaes`: every candidate rendered and scored by the spectral loss); "
            "*evaluation*, the wall time of `evaluate_resynthesis` on the whole split with "
            f"every audio distance, for {rows[0]['predictors']} predictors (one plus the "
            "oracle), against the target of seconds, not minutes "
            f"(<= {EVAL_TARGET_S:.0f} s). The Moog runs with its compiled ladder and with "
            f"the torch loop, interleaved, medians of {args.repeats}.",
            "",
            f"Machine: {machine_line()}.",
            "",
            "| " + " | ".join(cols) + " |",
            "|---|---|" + "---:|" * (len(cols) - 2),
            *("| " + " | ".join(cells(r)) + " |" for r in rows),
        ]
        note = load_note()
        if note:
            lines += ["", note]
        update_section(args.markdown, "bench_render", "\n".join(lines))


if __name__ == "__main__":
    main()
