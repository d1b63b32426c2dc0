"""The front-end study's parts: the collector on a fake sweep folder, the matched-parameter
selection, the verdict rules, the drift callback, and that a mask-out band removes what it
should (probes fitted with the true labels on the masked features)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src.callbacks.frontend_drift import FILTERS_FILE, drift_measures
from src.data.vimh.format import ParamSpec
from src.evaluation.frontend_study import (
    VAL_SCORE,
    Config,
    Run,
    gain,
    gains_over_fixed,
    group,
    match_by_params,
    matched_gains,
    verdict,
)
from src.evaluation.probe import frontend_features, probe_features
from src.models.components.frontend import STFTMelFrontend
from src.paths import PROJECT_ROOT
from src.train import train
from tests.helpers.runs import QUIET, on
from tests.test_scripts import load_script


@pytest.fixture
def study(monkeypatch):
    """scripts/frontend_study.py as a module (registered: its dataclasses need that)."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    path = PROJECT_ROOT / "scripts" / "frontend_study.py"
    spec = importlib.util.spec_from_file_location("frontend_study", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "frontend_study", module)
    spec.loader.exec_module(module)
    return module


def fake_job(root: Path, study, cfg: Config, seed: int, metrics: dict | None) -> None:
    """A job folder as the study writes it; `metrics=None` is a job that died before the end."""
    job = root / study.job_name(cfg, seed)
    (job / ".hydra").mkdir(parents=True)
    over = study.overrides(cfg, seed)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in over))
    (job / ".hydra" / "config.yaml").write_text("optimized_metric: val/score\n")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def metrics(
    score: float, trainable: float = 1000.0, backend: float = 100.0, val: float | None = None
) -> dict:
    out = {
        "test/score": score,
        "test/pitch/mae": 1.0 - score,
        "frontend/params/trainable": trainable,
        "frontend/params/backend": backend,
    }
    if val is not None:
        out[VAL_SCORE] = val
    return out


def test_collector_reads_a_fake_sweep_folder(tmp_path, study):
    cells = {
        Config("saw", "cnn5k", "fixed"): [0.40, 0.42, 0.44],
        Config("saw", "cnn5k", "both"): [0.50, 0.52, 0.54],
        Config("saw", "cnn5k", "mel", n_mels=10, mel_init="random", lr=0.0003): [0.3, 0.3, 0.3],
        Config("moog_hard", "cnn5k", "stft", mask="4-35"): [0.2, 0.1, 0.3],
    }
    for cfg, scores in cells.items():
        for seed, s in enumerate(scores):
            fake_job(tmp_path, study, cfg, seed, metrics(s))
    fake_job(tmp_path, study, Config("saw", "bc0.5", "fixed"), 0, None)  # died

    runs = study.collect(tmp_path)
    assert len(runs) == 13
    groups = group(runs)
    assert set(groups) == set(cells)  # the dead job has no score: left out
    for cfg, scores in cells.items():
        assert [r.seed for r in groups[cfg]] == [0, 1, 2]
        assert [r.metrics["test/score"] for r in groups[cfg]] == pytest.approx(scores)
    g = gain(groups, Config("saw", "cnn5k", "both"), Config("saw", "cnn5k", "fixed"))
    assert g.gain == pytest.approx(0.10)
    assert g.se == pytest.approx(math.sqrt(2 * 0.02**2 / 3))
    # The fixed front-end's lr is moot: every fixed run is one cell whatever its lr override.
    assert Config("saw", "cnn5k", "fixed", lr=0.0003) == Config("saw", "cnn5k", "fixed")
    assert [x.config for x in gains_over_fixed(groups)] == [Config("saw", "cnn5k", "both")]

    # collect_runs reads the same folder: one CSV row per job, the dead one marked failed.
    result = load_script("collect_runs").main([str(tmp_path), "--out", str(tmp_path / "runs")])
    states = sorted(r["state"] for r in result["rows"])
    assert states == ["complete"] * 12 + ["failed"]


def test_a_gain_with_one_seed_on_a_side_has_no_error_and_is_never_significant():
    groups = group(
        runs_of(Config("saw", "cnn80k", "fixed"), [0.40, 0.41, 0.42], 1, 1)
        + runs_of(Config("saw", "cnn80k", "both"), [0.90], 2, 1)
    )
    g = gain(groups, Config("saw", "cnn80k", "both"), Config("saw", "cnn80k", "fixed"))
    assert g.gain == pytest.approx(0.49) and g.n == (1, 3)
    assert math.isnan(g.se) and math.isnan(g.t) and not g.significant


def test_a_folder_of_other_runs_is_refused(tmp_path, study):
    job = tmp_path / "0" / ".hydra"
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text("- seed=1\n")
    (job / "config.yaml").write_text("{}\n")
    with pytest.raises(SystemExit, match="not a front-end study job"):
        study.collect(tmp_path)


def test_match_by_params_picks_the_nearest_count_within_the_tolerance():
    candidates = {"small": 10_000, "mid": 60_000, "big": 100_000}
    picks = match_by_params(
        {"a": 75_000, "b": 80_000, "c": 250_000, "d": 14_000, "e": 16_000},
        candidates,
        tolerance=1.5,
    )
    # 75k: 60k is 1.25x away, 100k 1.33x; 80k: nearer 100k (1.25x) than 60k (1.33x) on a log scale.
    assert picks == {"a": "mid", "b": "big", "c": None, "d": "small", "e": None}
    # A tie on the log scale goes to the larger candidate (the harder comparison).
    assert match_by_params({"t": 20.0}, {"lo": 10.0, "hi": 40.0}, tolerance=2.0) == {"t": "hi"}
    assert match_by_params({"t": 20.0}, {"lo": 10.0}, tolerance=1.99) == {"t": None}
    with pytest.raises(ValueError, match="tolerance"):
        match_by_params({"t": 1.0}, {"c": 1.0}, tolerance=0.5)


def runs_of(cfg: Config, scores, trainable: float, backend: float, val=None) -> list[Run]:
    """Runs of one cell; `val`: their validation scores (default: none recorded)."""
    val = val if val is not None else [None] * len(scores)
    return [
        Run(cfg, i, metrics(s, trainable, backend, v)) for i, (s, v) in enumerate(zip(scores, val))
    ]


def test_matched_gains_compare_with_the_fixed_back_end_of_equal_budget():
    runs = [
        *runs_of(Config("saw", "cnn5k", "fixed"), [0.40, 0.41, 0.42], 7_000, 4_800),
        *runs_of(Config("saw", "cnn5k", "stft"), [0.45, 0.46, 0.47], 73_000, 4_800),
        *runs_of(Config("saw", "cnn5k", "mel"), [0.42, 0.43, 0.44], 12_000, 4_800),
        *runs_of(Config("saw", "cnn80k", "fixed"), [0.60, 0.61, 0.62], 88_000, 79_000),
        *runs_of(Config("saw", "bc1", "fixed"), [0.50, 0.50, 0.51], 12_000, 8_800),
        # another task's fixed runs are never a match
        *runs_of(Config("moog_hard", "cnn80k", "fixed"), [0.9, 0.9, 0.9], 73_000, 79_000),
    ]
    m = matched_gains(group(runs), tolerance=1.5)
    stft = m[Config("saw", "cnn5k", "stft")]
    assert stft.match == Config("saw", "cnn80k", "fixed") and stft.match_count == 88_000
    assert stft.gain.gain == pytest.approx(-0.15) and stft.gain.significant
    mel = m[Config("saw", "cnn5k", "mel")]  # 12k: bc1's fixed 12k, not its own 7k
    assert mel.match == Config("saw", "bc1", "fixed")
    alone = matched_gains(group(runs[:6]), tolerance=1.5)  # cnn5k alone: no 73k candidate
    assert alone[Config("saw", "cnn5k", "stft")].match is None


def grid(gains: dict[str, float], sizes: dict[str, float], noise: float = 0.005) -> list[Run]:
    """`fixed` and `both` per back-end, `sizes` its total trainable parameters; the validation
    scores follow the test scores."""
    runs = []
    for b, g in gains.items():
        base = [0.5 - noise, 0.5, 0.5 + noise]
        runs += runs_of(Config("saw", b, "fixed"), base, sizes[b], sizes[b] / 2, val=base)
        scores = [0.5 + g - noise, 0.5 + g, 0.5 + g + noise]
        runs += runs_of(Config("saw", b, "both"), scores, sizes[b] + 70_000, sizes[b] / 2, scores)
    return runs


FAMILIES = {"linear": "linear", "bc0.5": "bc", "bc1": "bc", "cnn5k": "cnn", "cnn80k": "cnn"}
# Total trainable parameters with the fixed front-end, as the study measures them: the linear
# back-end has 2 back-end weights but its heads make it the largest model.
SIZES = {"linear": 229_000, "bc0.5": 4_900, "bc1": 12_000, "cnn5k": 7_000, "cnn80k": 88_000}


def test_verdict_holds_when_small_back_ends_gain_and_large_ones_less():
    gains = {"linear": 0.0, "bc0.5": 0.08, "bc1": 0.02, "cnn5k": 0.06, "cnn80k": 0.00}
    v = verdict(group(grid(gains, SIZES)), "saw", FAMILIES)
    assert v.small == ["bc0.5", "cnn5k"]  # the smaller half by total trainable parameters
    assert v.sizes["linear"] == 229_000
    assert (v.claim1, v.claim2) == ("holds", "holds")
    assert [(lo, hi) for lo, hi, _, _ in v.pairs] == [("bc0.5", "bc1"), ("cnn5k", "cnn80k")]
    assert v.rho < 0
    assert set(v.chosen_on.values()) == {"validation"}


def test_a_large_linear_model_does_not_make_claim_1_hold():
    """The published flaw: `linear` gained, counted as small by its 2 back-end weights though
    its heads make it the largest model; by total trainable parameters it is not small."""
    gains = {"linear": 0.04, "bc0.5": 0.0, "cnn5k": 0.0, "cnn80k": 0.0}
    v = verdict(group(grid(gains, SIZES)), "saw", FAMILIES)
    assert "linear" not in v.small and v.claim1 == "does not hold"


def test_each_back_ends_setting_is_chosen_on_validation_not_test():
    fixed = Config("saw", "cnn5k", "fixed")
    base = [0.49, 0.50, 0.51]
    runs = runs_of(fixed, base, 7_000, 4_800, val=base)
    # `mel` looks best on test but not on validation; `both` wins on validation.
    runs += runs_of(fixed.with_setting("mel"), [0.59, 0.60, 0.61], 12_000, 4_800, val=base)
    runs += runs_of(fixed.with_setting("both"), [0.52, 0.53, 0.54], 78_000, 4_800, [0.6] * 3)
    v = verdict(group(runs), "saw", FAMILIES)
    assert v.best["cnn5k"].config.setting == "both" and v.chosen_on == {"cnn5k": "validation"}
    assert v.best["cnn5k"].gain == pytest.approx(0.03)  # its test gain is what is reported
    # Without validation scores the choice falls back to test, and says so.
    bare = [Run(r.config, r.seed, {k: x for k, x in r.metrics.items() if k != VAL_SCORE})
            for r in runs]  # fmt: skip
    v = verdict(group(bare), "saw", FAMILIES)
    assert v.best["cnn5k"].config.setting == "mel" and v.chosen_on == {"cnn5k": "test"}


def test_verdict_refutes_when_the_gain_grows_with_capacity():
    gains = {"linear": 0.0, "bc0.5": 0.0, "bc1": 0.05, "cnn5k": 0.0, "cnn80k": 0.06}
    v = verdict(group(grid(gains, SIZES)), "saw", FAMILIES)
    assert v.claim1 == "does not hold"
    assert v.claim2 == "does not hold"


def test_verdict_without_any_gain_has_nothing_to_shrink():
    gains = dict.fromkeys(SIZES, 0.0)
    v = verdict(group(grid(gains, SIZES)), "saw", FAMILIES)
    assert (v.claim1, v.claim2) == ("does not hold", "does not hold")


def test_verdict_partly_and_inconclusive_within_noise():
    gains = {"linear": 0.0, "bc0.5": 0.10, "bc1": 0.0, "cnn5k": 0.0, "cnn80k": 0.0}
    v = verdict(group(grid(gains, SIZES, noise=0.03)), "saw", FAMILIES)
    assert v.claim1 == "partly"
    assert v.claim2 == "inconclusive"


def test_collector_takes_the_best_validation_epoch_from_the_run_log(tmp_path, study):
    cfg = Config("saw", "cnn5k", "both")
    fake_job(tmp_path, study, cfg, 0, metrics(0.5))
    log = tmp_path / study.job_name(cfg, 0) / "csv" / "version_0"
    log.mkdir(parents=True)
    (log / "metrics.csv").write_text(
        "epoch,step,train/loss,val/score\n0,31,1.0,\n0,31,,0.41\n1,63,,0.47\n2,95,,0.44\n"
    )
    fake_job(tmp_path, study, Config("saw", "cnn5k", "fixed"), 0, metrics(0.4))  # no log
    runs = {r.config.setting: r for r in study.collect(tmp_path)}
    assert runs["both"].metrics[VAL_SCORE] == 0.47 and VAL_SCORE not in runs["fixed"].metrics


def test_the_studys_prose_states_only_what_was_measured(study):
    """grid_why types no measurement: run times, training notes and the configs' rates come
    from `facts`, and are left out when unknown."""
    bare = study.grid_why({})
    for typed in ("under two hours", "1 to 14", "13,107", "5-14", "1e-3 or 3e-4"):
        assert typed not in bare, typed
    assert "1,080 runs" in " ".join(bare.split())  # the grid, computed from its factors
    facts = {
        "minutes": (1.2, 14.4),
        "slowest": ("bc0.5", 9.3),
        "train_records": 13_108,
        "config_frontend_lrs": [0.001, 0.0003],
    }
    text = " ".join(study.grid_why(facts).split())
    assert "the runs here took 1 to 14 minutes each" in text
    assert "at a median 9 minutes a run, the slowest back-end" in text
    notes = 6 * 32 * 128
    assert f"({notes / 13_108:.1f} passes over the 13,108 training notes)" in text
    assert "rate (0.001, 0.0003)" in text


# --- drift and parameter counts -----------------------------------------------------------------
def test_drift_measures_are_zero_at_init_and_see_a_shift():
    fe = STFTMelFrontend(8000, n_fft=64, n_mels=8)
    stft, fb = fe.stft.detach(), fe.filterbank.detach()
    zero = drift_measures(stft, stft, fb, fb, 8000)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in zero.values())
    shifted = torch.roll(fb, 1, dims=0)  # every band one bin (125 Hz) up, the top one wraps
    d = drift_measures(stft, stft * 1.1, fb, shifted, 8000)
    assert d["drift/stft"] == pytest.approx(0.1, rel=1e-5)
    assert d["drift/filterbank"] > 0.1
    bin_hz = 4000 / 32
    assert d["drift/band_centre_hz"] == pytest.approx(bin_hz, rel=0.05)
    assert d["drift/kernel_centre_hz"] == pytest.approx(0.0, abs=1e-6)  # scaling moves no centre


@pytest.mark.parametrize("trainable", [False, True])
def test_a_frontend_run_logs_counts_and_drift(compose_cfg, toy, one_thread, trainable):
    flag = str(trainable).lower()
    cfg = compose_cfg(
        "train",
        [
            "data=saw_audio",
            "model=stft_cnn_77k",
            *on(toy),
            "callbacks=frontend",
            "callbacks.filterbank_plot=null",
            f"model.net.frontend.trainable_stft={flag}",
            f"model.net.frontend.trainable_mel={flag}",
            "model.net.frontend.lr=0.01",
            "trainer.max_epochs=1",
            *QUIET,
        ],
    )
    metrics, objects = train(cfg)
    m = {k: float(v) for k, v in metrics.items()}
    model = objects["model"]
    assert m["frontend/params/frontend"] == 2 * 129 * 256 + 129 * 40
    assert m["frontend/params/frontend_trainable"] == (
        m["frontend/params/frontend"] if trainable else 0
    )
    assert m["frontend/params/trainable"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    total = (
        m["frontend/params/frontend"] + m["frontend/params/backend"] + m["frontend/params/heads"]
    )
    assert total == sum(p.numel() for p in model.parameters())
    moved = [m[f"frontend/drift/{k}"] for k in ("filterbank", "stft")]
    assert (min(moved) > 0) if trainable else (max(moved) == 0)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert "frontend/drift/stft" in saved
    filters = torch.load(Path(cfg.paths.output_dir) / FILTERS_FILE, weights_only=True)
    assert torch.equal(filters["stft"], model.net.frontend.stft.detach())
    assert torch.equal(filters["stft"], filters["stft_init"]) == (not trainable)


# --- mask-out: the band's information is gone ---------------------------------------------------
SR, N = 8000, 2000
SPECS = (
    ParamSpec("freq", 1500.0, 2000.0, 50.0, unit="Hz"),  # a sine inside the masked band
    ParamSpec("level_out", -30.0, 0.0, 3.0, unit="dB"),  # a second sine's level, at 500 Hz
)
MASK = (28, 85)  # 875..2656 Hz: the in-band sine with 20 bins to spare on each side


def sines(n: int, rng: np.random.Generator, fade: bool, nuisance: bool = True):
    """(waveforms, codes): two sines of random phase; with `nuisance` the in-band one's level
    varies, unlabelled. `fade`: 20 ms raised-cosine ramps at both ends, as a note has."""
    codes = rng.integers(0, 256, size=(n, 2))
    freq, level = (s.decode(codes[:, i])[:, None] for i, s in enumerate(SPECS))
    t = np.arange(N) / SR
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2))
    amp = 0.3 * 10 ** (rng.uniform(-20 if nuisance else 0, 0, size=(n, 1)) / 20)
    x = amp * np.sin(2 * np.pi * freq * t + phase[:, :1])
    x = x + 0.3 * 10 ** (level / 20) * np.sin(2 * np.pi * 500.0 * t + phase[:, 1:])
    if fade:
        edge = np.minimum(np.arange(N), N - 1 - np.arange(N)) / (0.02 * SR)
        x = x * (0.5 - 0.5 * np.cos(np.pi * np.minimum(edge, 1.0)))
    return x.astype(np.float32), codes


def probe_skills(mask, fade: bool, nuisance: bool = True) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    sizes = (("train", 800), ("val", 200), ("test", 300))
    data = {k: sines(n, rng, fade, nuisance) for k, n in sizes}
    fe = STFTMelFrontend(SR, n_fft=256, n_mels=20, eps=1e-5, maskout=mask)
    splits = {k: (frontend_features(fe, x), c) for k, (x, c) in data.items()}
    return {
        p: {s.name: m[f"test/{s.name}/skill"] for s in SPECS}
        for p, m in probe_features(SPECS, splits).items()
    }


def test_the_mask_out_band_removes_that_information(one_thread):
    full, masked = probe_skills(None, fade=True), probe_skills(MASK, fade=True)
    for probe in ("1-NN", "ridge"):
        assert full[probe]["freq"] > 0.75, full  # 0.85-0.9 measured
        assert masked[probe]["freq"] < 0.0, masked  # -0.2 to -0.4: below the train-mean guess
        assert masked[probe]["level_out"] > 0.8, masked  # what lies outside the band stays


def test_abrupt_clip_edges_leak_the_band_past_the_mask(one_thread):
    """Without fades, the reflect-padded edge frames splatter the in-band sine over every bin,
    and the ridge probe reads its frequency there: zeroing bins removes a band's information
    only from frames where it stays in the band (the study's probes measure what is left)."""
    masked = probe_skills(MASK, fade=False, nuisance=False)
    assert masked["ridge"]["freq"] > 0.2, masked  # 0.39 measured
    faded = probe_skills(MASK, fade=True, nuisance=False)
    assert faded["ridge"]["freq"] < 0.0, faded


def test_every_study_job_composes_to_its_cell(study):
    """The grid's cells compose (no typo in an override) into the models they name: a cell
    for every value of every factor (composing all 63 takes half a minute on a busy CPU)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.paths import CONFIG_DIR

    cells = [c for c, seed in study.jobs() if seed == 0]
    assert len(cells) == len(set(cells)) == len(study.jobs()) // len(study.SEEDS)
    fields = ("task", "backend", "setting", "n_mels", "mel_init", "mask", "lr")
    picked = list({(f, getattr(c, f)): c for c in reversed(cells) for f in fields}.values())
    picked = list(dict.fromkeys(picked))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        configs = [compose("train", overrides=study.overrides(c, 0)) for c in picked]
    GlobalHydra.instance().clear()
    for cfg, composed in zip(picked, configs):
        fe = composed.model.net.frontend
        assert (fe.trainable_stft, fe.trainable_mel) == study.SETTINGS[cfg.setting]
        assert (fe.n_mels, fe.mel_init) == (cfg.n_mels, cfg.mel_init)
        assert fe.lr == pytest.approx(cfg.lr if cfg.setting != "fixed" else study.LR)
        assert (fe.maskout is None) == (cfg.mask == "none")
        assert composed.data.representation == "audio"
        assert composed.trainer.max_epochs == study.BUDGET["trainer.max_epochs"]
        assert composed.callbacks.frontend_drift is not None


# --- the report ---------------------------------------------------------------------------------
def scored(
    score: float, frontend: float, backend: float, heads=("pitch",), head_params: int = 9
) -> dict:
    """A study run's metrics: `frontend` trainable front-end parameters, `head_params` in the
    heads."""
    m = metrics(score, frontend + backend + head_params, backend)
    for h in heads:
        m |= {f"test/{h}/mae": 1.0 - score, f"test/{h}/skill": score}
    return m | {
        "frontend/params/frontend_trainable": frontend,
        "frontend/params/heads": head_params,
    }


def test_the_report_states_the_verdict_and_the_missing_cells(tmp_path, study, one_thread):
    """write_report on a fake sweep: a gain for the small ConvNet that vanishes for the large
    one, and a gain for the linear back-end, whose 2 back-end weights sit under heads that make
    it the largest model (so it is not small); a cell that never ran. The page states both
    claims, the matched comparison, which planned cells are missing, that the settings were
    chosen on test where the runs logged no validation score, and draws the gain figure."""
    from src.metrics.baselines import BASELINES

    from frontend_study_report import write_report

    gains = {"linear": 0.10, "cnn5k": 0.06, "cnn80k": 0.00}
    sizes = {"linear": 2, "cnn5k": 4_800, "cnn80k": 79_000}
    for b, g in gains.items():
        for setting, add, fe in (("fixed", 0.0, 0), ("both", g, 71_208)):
            for seed, noise in enumerate((-0.005, 0.0, 0.005)):
                head_params = 229_000 if b == "linear" else 9
                m = scored(0.5 + add + noise, fe, sizes[b], head_params=head_params)
                fake_job(tmp_path, study, Config("saw", b, setting), seed, m)
    # The mask-out: the mask costs the fixed front-end 0.3 of cutoff skill, `both` wins 0.1 back.
    for setting, mask, skill in (
        ("fixed", "none", 0.6),
        ("fixed", "4-35", 0.3),
        ("both", "none", 0.6),
        ("both", "4-35", 0.4),
    ):
        for seed, noise in enumerate((-0.005, 0.0, 0.005)):
            m = scored(skill + noise, 0, 2, heads=("cutoff",))
            fake_job(tmp_path, study, Config("moog_hard", "linear", setting, mask=mask), seed, m)
    heads = ("pitch", "cutoff")
    base = {n: {"test/score": 0.0, **{f"test/{h}/mae": 1.0 for h in heads}} for n in BASELINES}
    probe = {"test/score": 0.3, **{f"test/{h}/skill": 0.3 for h in heads}}
    ctx = study.context() | {
        "baselines": {"saw": base, "moog_hard": base},
        "probes": {"full": {"ridge": probe}, "masked": {"ridge": probe}},
    }
    md = tmp_path / "study.md"
    md.write_text("# Study\n\n<!-- frontend_study:start -->\n<!-- frontend_study:end -->\n")
    write_report(study.collect(tmp_path), md, tmp_path / "figures", ctx)

    page = md.read_text()
    assert "**saw, claim 1 (a gain for small back-ends): holds.**" in page
    assert "the others: cnn80k (79,009), linear (229,002)" in page  # linear is not small
    assert "cnn5k (4,809) +0.060 ± 0.004 (t +14.7) (`both`)" in page
    assert "except cnn5k, cnn80k, linear (runs without a validation score" in page
    # The largest model (linear) gains most: size and gain rise together, so not "holds".
    assert "**saw, claim 2 (the gain shrinks as the back-end grows): inconclusive.**" in page
    assert "Spearman correlation of size and gain +0.50" in page
    assert "cnn5k minus cnn80k +0.060" in page
    assert "cnn5k+both vs cnn80k +0.060" in page  # 76k trainable against the fixed 79k ConvNet
    assert "**moog_hard**: the claims are not decided here" in page
    assert "saw/bc0.5/fixed (0 of 3 seeds)" in page and "saw/cnn5k/fixed (0 of" not in page
    assert (
        "| *chance* |" in page
        and "| cnn80k | both | 71,208 | 79,000 | 9 | 150,217 | 3 | 0.500 ± 0.005 |" in page
    )
    assert "**linear**: the mask costs the fixed front-end +0.300 ± 0.004 of cutoff skill" in page
    assert "`both` wins back +0.100 ± 0.004 (t +24.5), +33% of the loss" in page
    assert (tmp_path / "figures" / "gains.png").is_file()


def test_a_study_folder_of_the_main_table_alone_says_what_did_not_run(tmp_path, study, one_thread):
    """Only the saw main table ran: no moog_hard tables, no mask-out probes, said in words."""
    from src.metrics.baselines import BASELINES

    from frontend_study_report import write_report

    for setting, add in (("fixed", 0.0), ("both", 0.05)):
        for seed, noise in enumerate((-0.005, 0.0, 0.005)):
            m = scored(0.5 + add + noise, 0 if setting == "fixed" else 71_208, 4_800)
            fake_job(tmp_path, study, Config("saw", "cnn5k", setting), seed, m)
    base = {n: {"test/score": 0.0, "test/pitch/mae": 1.0} for n in BASELINES}
    ctx = study.context() | {"baselines": {"saw": base}, "probes": None}
    md = tmp_path / "study.md"
    md.write_text("<!-- frontend_study:start -->\n<!-- frontend_study:end -->\n")
    write_report(study.collect(tmp_path), md, tmp_path / "figures", ctx)
    page = md.read_text()
    assert "- **moog_hard**: no runs of this task in this study folder." in page
    assert "No mask-out runs (moog_hard, STFT bins [4, 35)) in this study folder." in page
    assert "**moog_hard**\n" not in page and "**saw, claim 1" in page
