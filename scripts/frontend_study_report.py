"""The front-end study's report: tables, figures and the verdict, from the collected runs.

`write_report` (called by scripts/frontend_study.py) writes the `frontend_study` section of the
doc and its figures. Every number comes from the runs' `metrics.json` and
`frontend_filters.pt`, the baselines and the probes (computed once, cached in the study
folder as JSON).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from src.evaluation.frontend_study import (
    BACKEND_PARAMS,
    SCORE,
    SETTINGS,
    T_SIGNIFICANT,
    TRAINABLE,
    TRAINABLE_PARAMS,
    Config,
    Gain,
    Run,
    gain,
    group,
    matched_gains,
    mean,
    values,
    verdict,
)
from src.metrics import metric_key
from src.metrics.baselines import BASELINES

from frontend_study_figures import (
    filters_figure,
    gains_figure,
    in_band_gain_db,
    inits_figure,
    maskout_figure,
)
from mdreport import machine_line, markdown_table, spread, update_section

DRIFT = {
    "filterbank change": "frontend/drift/filterbank",
    "STFT change": "frontend/drift/stft",
    "band centre shift (Hz)": "frontend/drift/band_centre_hz",
    "kernel centre shift (Hz)": "frontend/drift/kernel_centre_hz",
}
DRIFT_PART = {  # which part of the front-end each measure is about (0: STFT, 1: filterbank)
    "frontend/drift/filterbank": 1,
    "frontend/drift/stft": 0,
    "frontend/drift/band_centre_hz": 1,
    "frontend/drift/kernel_centre_hz": 0,
}
TOLERANCE = 1.5  # matched parameters: the nearest fixed configuration within this factor
FIGURE_BACKEND = "cnn5k"  # its seed-0 runs are the figures' filters (all four settings ran)


def heads_in(metrics: dict) -> list[str]:
    return [k.split("/")[1] for k in metrics if k.startswith("test/") and k.endswith("/mae")]


def count(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:,.0f}"


def cell(runs: list[Run] | None, metric: str, fmt: str = ".3f") -> str:
    """mean ± std of a metric over runs, or '-'."""
    v = values(runs or [], metric)
    return spread(v, fmt) if v else "-"


def drift_cells(runs: list[Run], setting: str) -> list[str]:
    """The drift measures of a cell; '-' for a part that was frozen (it cannot move)."""
    flags = SETTINGS[setting]
    return [cell(runs if flags[DRIFT_PART[k]] else None, k, ".3g") for k in DRIFT.values()]


def gain_text(g: Gain | None) -> str:
    if g is None:
        return "-"
    if math.isnan(g.se):
        return f"{g.gain:+.3f} (one seed on a side: no error)"
    return f"{g.gain:+.3f} ± {g.se:.3f} (t {g.t:+.1f})"


def results_table(groups, rows: list[tuple[list[str], Config]], label_cols, base) -> list[str]:
    """Baselines, then one row per cell: parameters, seeds, score and per-head MAE (mean ± std
    over seeds)."""
    heads = heads_in(base["train_mean"])
    cols = [*label_cols, "front-end trainable", "back-end", "heads", "trainable", "seeds"]
    cols += ["score", *(f"{h} MAE" for h in heads)]
    out = []
    for name in BASELINES:
        m = base[name]
        out.append(
            [f"*{name}*", *["-"] * (len(label_cols) + 4), f"{m[SCORE]:.3f}"]
            + [f"{m[metric_key('test', 'mae', h)]:.3g}" for h in heads]
        )
    for labels, cfg in rows:
        runs = groups.get(cfg)
        if not runs:
            continue
        params = ("frontend/params/frontend_trainable", BACKEND_PARAMS, "frontend/params/heads")
        out.append(
            [*labels, *(count(mean(runs, k)) for k in (*params, TRAINABLE_PARAMS))]
            + [str(len(runs)), cell(runs, SCORE)]
            + [cell(runs, metric_key("test", "mae", h), ".3g") for h in heads]
        )
    return markdown_table(cols, out)


def sweep_table(groups, cells: list[tuple[str, Config]], name: str, heads) -> list[str]:
    """Rows of a one-factor sweep: score and per-head MAE (mean ± std over seeds), the gain
    over the fixed front-end at the same value, and how far the front-end moved."""
    cols = [name, "setting", "seeds", "score", *(f"{h} MAE" for h in heads)]
    cols += ["gain over fixed", *DRIFT]
    rows = []
    for value, cfg in cells:
        runs = groups.get(cfg)
        if not runs:
            continue
        ref = cfg.with_setting("fixed")
        g = gain(groups, cfg, ref) if cfg.setting != "fixed" and ref in groups else None
        maes = [cell(runs, metric_key("test", "mae", h), ".3g") for h in heads]
        moved = drift_cells(runs, cfg.setting)
        rows.append([value, cfg.setting, str(len(runs)), cell(runs, SCORE), *maes, gain_text(g)])
        rows[-1] += moved
    return markdown_table(cols, rows)


def filters_of(runs: list[Run], seed: int = 0) -> dict | None:
    for r in runs:
        path = Path(r.output_dir) / "frontend_filters.pt"
        if r.seed == seed and path.is_file():
            return torch.load(path, weights_only=True)
    return None


def claims(groups, task: str, ctx: dict) -> list[str]:
    """The verdict on both claims for one task, in words, with the numbers that decide it."""
    v = verdict(groups, task, ctx["families"])
    if not v.best:
        return [f"- **{task}**: no finished cells yet."]
    small = "; ".join(
        f"{b} ({v.sizes[b]:,.0f}) {gain_text(v.best[b])} (`{v.best[b].config.setting}`)"
        for b in v.small
    )
    others = [b for b in sorted(v.best, key=v.sizes.get) if b not in v.small]
    large = ", ".join(f"{b} ({v.sizes[b]:,.0f})" for b in others) or "none"
    on_test = [b for b, how in v.chosen_on.items() if how != "validation"]
    chosen = (
        "each back-end's trainable setting chosen on the validation score"
        if not on_test
        else "each back-end's trainable setting chosen on the validation score, except "
        f"{', '.join(on_test)} (runs without a validation score: chosen on test, optimistic)"
    )
    top = max(v.best.values(), key=lambda g: g.gain)
    pairs = "; ".join(
        f"{lo} minus {hi} {d:+.3f} " + ("(one seed on a side)" if math.isnan(se) else f"± {se:.3f}")
        for lo, hi, d, se in v.pairs
    )
    pairs = pairs or "none yet (no family has gains finished for two back-ends)"
    sizes = ", ".join(
        f"{b} ({v.sizes[b]:,.0f}) {v.best[b].gain:+.3f}" for b in sorted(v.best, key=v.sizes.get)
    )
    matched = [
        m
        for m in matched_gains(groups, TOLERANCE).values()
        if m.gain is not None
        and m.config.task == task
        and m.config.backend != m.match.backend
        and m.config == Config(task, m.config.backend, m.config.setting)
    ]
    wins = [m for m in matched if m.gain.gain > 0 and m.gain.significant]
    losses = [m for m in matched if m.gain.gain < 0 and m.gain.significant]
    listed = "; ".join(
        f"{m.config.backend}+{m.config.setting} vs {m.match.backend} {m.gain.gain:+.3f}"
        for m in matched
    )
    return [
        f"- **{task}, claim 1 (a gain for small back-ends): {v.claim1}.** Small: the smaller "
        f"half of the back-ends by total trainable parameters with the fixed front-end (the "
        f"back-end, its input norm and the heads); the others: {large}. Each small back-end's "
        f"setting, chosen on validation, against its fixed front-end (test score gain, mean ± "
        f"standard error over seeds; in brackets its total trainable parameters): {small}. "
        f"Largest gain of any back-end's chosen setting: {top.gain:+.3f} "
        f"({top.config.backend}, `{top.config.setting}`, t {top.t:+.1f}). Settings: {chosen}.",
        f"- **{task}, claim 2 (the gain shrinks as the back-end grows): {v.claim2}.** Gain of "
        f"the chosen setting within a family, smaller minus larger back-end: {pairs}. By "
        f"back-end (total trainable parameters): {sizes}; Spearman correlation of size and "
        f"gain {v.rho:+.2f}.",
        f"- **{task}, at matched trainable parameters** (a fixed front-end whose other back-end "
        f"has the nearest trainable count, within {TOLERANCE}x): {len(wins)} of {len(matched)} "
        f"trainable cells beat their match and {len(losses)} lose by >= {T_SIGNIFICANT:g} "
        f"standard errors ({listed or 'no matches'}).",
    ]


def gains_section(groups, ctx: dict, figures: Path, rel: str) -> list[str]:
    """Per task: each trainable setting against the fixed front-end, same back-end and at
    matched trainable parameters; the figure of gain against back-end size."""
    matched = matched_gains(groups, TOLERANCE)
    lines, panels = [], {}
    for task in ctx["tasks"]:
        cols = ["back-end", "back-end params", "setting", "trainable", "gain, same back-end"]
        cols += ["matched fixed back-end (trainable)", "gain at matched parameters"]
        rows, points = [], []
        for b in ctx["backends"]:
            ref = Config(task, b, "fixed")
            for s in TRAINABLE:
                cfg = Config(task, b, s)
                if cfg not in groups or ref not in groups:
                    continue
                g, m = gain(groups, cfg, ref), matched[cfg]
                size = mean(groups[ref], BACKEND_PARAMS)
                total = mean(groups[ref], TRAINABLE_PARAMS)  # the verdict's size axis
                points.append((b, s, total, g.gain, 0.0 if math.isnan(g.se) else g.se))
                match = "none" if m.match is None else f"{m.match.backend} ({m.match_count:,.0f})"
                rows.append(
                    [b, count(size), s, count(m.count), gain_text(g), match, gain_text(m.gain)]
                )
        if points:
            panels[task] = points
        if rows:
            lines += [f"**{task}**", "", *markdown_table(cols, rows), ""]
    if any(panels.values()):
        gains_figure(figures / "gains.png", panels)
        lines += [f"![gain against back-end size]({rel}/gains.png)", ""]
    return lines


def sweeps_section(groups, ctx: dict, figures: Path, rel: str) -> list[str]:
    task, backend = ctx["sweep"]
    if task not in ctx["baselines"]:
        return [f"No runs of {task} in this study folder.", ""]
    heads = heads_in(ctx["baselines"][task]["train_mean"])  # in the dataset's order
    lines = [
        f"All on {task} with {backend}; n_mels 40 and the mel init unless varied.",
        "",
    ]
    cells = [(str(n), Config(task, backend, s, n_mels=n)) for n in ctx["n_mels"] for s in SETTINGS]
    lines += ["**n_mels**", "", *sweep_table(groups, cells, "n_mels", heads), ""]
    cells = [(i, Config(task, backend, s, mel_init=i)) for i in ctx["inits"] for s in SETTINGS]
    lines += ["**Filterbank initialisation**", "", *sweep_table(groups, cells, "init", heads), ""]
    inits = {
        i: filters_of(groups.get(Config(task, backend, "mel", mel_init=i), []))
        for i in ctx["inits"]
    }
    inits = {k: v for k, v in inits.items() if v is not None}
    if inits:
        inits_figure(
            figures / "inits.png",
            inits,
            f"{task}, {backend}, trainable filterbank, seed 0: learned (colour) over init (grey)",
        )
        lines += [f"![learned filterbanks from each init]({rel}/inits.png)", ""]
    return lines


def maskout_section(groups, ctx: dict, figures: Path, rel: str) -> list[str]:
    task, head, mask, backends = ctx["mask"]
    band = f"STFT bins [{mask[0]}, {mask[1]})"
    if not ctx.get("probes"):
        return [f"No mask-out runs ({task}, {band}) in this study folder.", ""]
    lines = [
        f"The {head} head of {task}: {band} zeroed in the power spectrum. First, what probes "
        f"fitted with the true labels read from the fixed front-end's output (test skill per "
        f"head; `src/evaluation/probe.py`):",
        "",
    ]
    clear, masked = ctx["probes"]["full"], ctx["probes"]["masked"]
    heads = heads_in(clear["ridge"])
    cols = ["probe", "features", "score", *heads]
    rows = []
    for probe in clear:
        for name, res in (("full", clear), ("masked", masked)):
            m = res[probe]
            skills = [m[metric_key("test", "skill", h)] for h in heads]
            rows.append([probe, name, *(f"{v:.3f}" for v in (m[SCORE], *skills))])
    lines += [*markdown_table(cols, rows), ""]
    skill = metric_key("test", "skill", head)
    cols = ["back-end", "setting", "score, full", "score, masked", f"{head} skill, full"]
    cols += [f"{head} skill, masked", "recovered", "unmasked kernels' in-band power, learned/init"]
    rows, shown, said, tag = [], {}, [], f"{mask[0]}-{mask[1]}"
    for b in backends:
        ref, ref_cut = Config(task, b, "fixed"), Config(task, b, "fixed", mask=tag)
        lost = mean(groups.get(ref, []), skill) - mean(groups.get(ref_cut, []), skill)
        for s in SETTINGS:
            full, cut = groups.get(Config(task, b, s)), groups.get(Config(task, b, s, mask=tag))
            if not cut:
                continue
            back = mean(cut, skill) - mean(groups.get(ref_cut, []), skill)
            recovered = f"{back / lost:+.0%}" if s != "fixed" and lost > 0 else "-"
            filters = [f for f in (filters_of([r], r.seed) for r in cut) if f is not None]
            moved = [in_band_gain_db(f, mask) for f in filters]
            if s in ("stft", "both") and filters:
                shown.setdefault(b, {})[s] = filters[0]
            in_band = spread(moved, "+.2f") + " dB" if moved else "-"
            scores = [cell(full, SCORE), cell(cut, SCORE), cell(full, skill), cell(cut, skill)]
            rows.append([b, s, *scores, recovered, in_band])
        if ref in groups and ref_cut in groups:
            said.append(mask_words(groups, b, ref, ref_cut, skill, head))
    lines += [
        "Then the runs: each setting trained on the masked front-end, against the same setting "
        "without the mask. *Recovered* is the share of the fixed front-end's loss in "
        f"{head} skill that the setting wins back; the last column is how much more of the "
        "masked band the unmasked STFT kernels respond to after training (only a trainable "
        "STFT can change it: the masked bins themselves get no gradient).",
        "",
        *markdown_table(cols, rows),
        "",
        *said,
        "",
    ]
    if shown:
        b = next(iter(shown))  # the first mask-out back-end with a trainable STFT's filters
        maskout_figure(
            figures / "maskout.png",
            shown[b],
            mask,
            f"{task}, {b}, {band} masked, seed 0: learned (colour) over init (grey)",
        )
        lines += [f"![kernels beside the masked band]({rel}/maskout.png)", ""]
    return lines


def mask_words(groups, backend: str, ref: Config, ref_cut: Config, skill: str, head: str) -> str:
    """What the mask cost the fixed front-end with one back-end, and what each trainable
    setting won back, in words."""
    cost = gain(groups, ref, ref_cut, skill)
    text = (
        f"- **{backend}**: the mask costs the fixed front-end {cost.gain:+.3f} ± {cost.se:.3f} "
        f"of {head} skill (t {cost.t:+.1f}; {mean(groups[ref], skill):.3f} unmasked)"
    )
    if not (cost.gain > 0 and cost.significant):
        return text + ": no more than seed noise, so there is nothing for a setting to recover."
    parts = []
    for s in TRAINABLE:
        cfg = ref_cut.with_setting(s)
        if cfg in groups:
            g = gain(groups, cfg, ref_cut, skill)
            parts.append(f"`{s}` wins back {gain_text(g)}, {g.gain / cost.gain:+.0%} of the loss")
    return text + ("; " + "; ".join(parts) if parts else "") + "."


def filters_section(groups, ctx: dict, figures: Path, rel: str) -> list[str]:
    lines = []
    for task in ctx["tasks"]:
        cols = ["back-end", "setting", *DRIFT]
        rows = []
        for b in ctx["backends"]:
            for s in TRAINABLE:
                runs = groups.get(Config(task, b, s))
                if runs:
                    rows.append([b, s, *drift_cells(runs, s)])
        shown = {s: filters_of(groups.get(Config(task, FIGURE_BACKEND, s), [])) for s in TRAINABLE}
        shown = {k: v for k, v in shown.items() if v is not None}
        if rows:
            lines += [f"**{task}**", "", *markdown_table(cols, rows), ""]
        if shown:
            name = f"filters_{task}.png"
            filters_figure(
                figures / name,
                shown,
                f"{task}, {FIGURE_BACKEND}, seed 0: learned (colour) over init (grey, dashed)",
            )
            lines += [f"![learned filters, {task}]({rel}/{name})", ""]
    return lines


def wall_time(runs: list[Run]) -> str:
    """The study's wall-clock span, first job started to last job finished (file times)."""
    starts, ends = [], []
    for r in runs:
        job = Path(r.output_dir)
        if (job / "metrics.json").is_file():
            starts.append((job / ".hydra" / "overrides.yaml").stat().st_mtime)
            ends.append((job / "metrics.json").stat().st_mtime)
    if not starts:
        return ""
    hours = (max(ends) - min(starts)) / 3600
    return f", {hours:.1f} h from the first start to the last finish on a shared machine"


def missing_cells(groups, ctx: dict) -> list[str]:
    """The planned cells that have fewer finished seeds than planned, in words."""
    short = []
    for cfg in ctx["cells"]:
        done = len(groups.get(cfg, []))
        if done < len(ctx["seeds"]):
            short.append(
                f"{cfg.task}/{cfg.backend}/{cfg.setting}"
                + (f"/n_mels {cfg.n_mels}" if cfg.n_mels != 40 else "")
                + (f"/{cfg.mel_init} init" if cfg.mel_init != "mel" else "")
                + (f"/mask {cfg.mask}" if cfg.mask != "none" else "")
                + f" ({done} of {len(ctx['seeds'])} seeds)"
            )
    if not short:
        return [f"Every planned cell finished ({len(ctx['cells'])} cells)."]
    return [
        f"Missing or short of seeds ({len(short)} of {len(ctx['cells'])} planned cells; not "
        "finished in this study folder, for lack of time or because the study was run with "
        "`--only`: a cell with no finished seed is absent from the tables below, a short one "
        "shows its seed count, and a gain with one seed on a side has no error and never "
        "counts): " + "; ".join(short) + "."
    ]


def write_report(runs: list[Run], markdown: Path, figures: Path, ctx: dict) -> None:
    """Write the doc's `frontend_study` section and its figures from the study's runs."""
    torch.set_num_threads(1)  # as in every run, so that the machine line states it
    groups = group(runs)
    finished = sum(len(v) for v in groups.values())
    rel = os.path.relpath(figures, markdown.parent)
    backends = ctx["backends"]
    lines = [
        f"Written by `{ctx['command']}` from {finished} finished runs of {ctx['n_jobs']} "
        f"({len(runs) - finished} failed or unfinished){wall_time(runs)}. Machine: "
        f"{machine_line()}.",
        "",
        "## Verdict",
        "",
        "The seed paper's two claims, decided on the main table (n_mels 40, mel init) by the "
        "rules of `verdict` in `src/evaluation/frontend_study.py`: a gain counts when it is at "
        f"least {T_SIGNIFICANT:g} standard errors of the difference of the seed means (with 3 "
        "seeds a side, t = 3 is p ~ 0.04, two-sided; a gain is in units of the test score, "
        "the mean skill over heads, so +0.01 is one point of skill).",
        "",
    ]
    for task in ctx["tasks"]:
        if task not in ctx["baselines"]:
            lines.append(f"- **{task}**: no runs of this task in this study folder.")
        elif task in ctx["claim_tasks"]:
            lines += claims(groups, task, ctx)
        else:
            lines.append(
                f"- **{task}**: the claims are not decided here (only the mask-out's back-ends "
                "ran on this task, with two settings; see the mask-out)."
            )
    lines += ["", "## The study", "", ctx["why"], "", *missing_cells(groups, ctx)]
    lines += ["", "Back-ends:", ""]
    lines += markdown_table(
        ["name", "back-end", "family", "model config and overrides"],
        [
            [n, b.label, b.family, " ".join(f"`{o}`" for o in (f"model={b.model}", *b.overrides))]
            for n, b in backends.items()
        ],
    )
    lines += [
        "",
        "Settings: `fixed` (both frozen: torchaudio's log-mel), `mel` (trainable filterbank), "
        "`stft` (trainable STFT kernels), `both`. Parameter counts are measured on each run "
        "(`FrontendDrift`): the front-end's trainable ones (66,048 STFT weights and 129 x n_mels "
        "filterbank weights when trainable), the back-end's (with the input norm), the heads' and "
        "the total trainable. *score* is the test split's mean skill over heads, skill = 1 - MAE / "
        "MAE of the train-mean guess; MAE in each head's natural unit. Baselines (in italics) "
        "are the project's reference predictors on the same dataset's images "
        "(`src/metrics/baselines.py`).",
        "",
        "## Settings x back-ends (n_mels 40, mel init)",
        "",
    ]
    for task in ctx["tasks"]:
        if task not in ctx["baselines"]:  # no run of it: nothing to tabulate
            continue
        cells = [([b, s], Config(task, b, s)) for b in backends for s in SETTINGS]
        lines += [
            f"**{task}**",
            "",
            *results_table(groups, cells, ["back-end", "setting"], ctx["baselines"][task]),
            "",
        ]
    lines += ["## Gains over the fixed front-end", "", *gains_section(groups, ctx, figures, rel)]
    lines += ["## n_mels and filterbank init", ""]
    lines += sweeps_section(groups, ctx, figures, rel)
    lines += ["## Mask-out", "", *maskout_section(groups, ctx, figures, rel)]
    lines += [
        "## Learned filters",
        "",
        "How far each front-end moved from its init: relative "
        "Frobenius change of the filterbank and of the STFT kernels, and the mean shift of "
        "the bands' and of the kernels' centre frequencies (`src/callbacks/frontend_drift.py`).",
        "",
        *filters_section(groups, ctx, figures, rel),
    ]
    update_section(markdown, "frontend_study", "\n".join(lines))
