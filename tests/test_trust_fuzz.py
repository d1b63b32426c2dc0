"""Generated hostile checkpoints (hypothesis): nested hyper-parameter trees carrying one payload
at any depth (an interpolation through every resolver OmegaConf, Hydra and this project
register; a Hydra key `_target_`/`_args_`/`_partial_`/`_recursive_`/`_convert_`; a pickled
object), fed to eval, predict and resume as the entry points call them. Nothing runs (the
sentinel files stay as they were) and the refusal is one line naming the key that holds the
payload. The default suite runs a few hundred examples, `-m slow` many more; examples are
derandomized, so a failure reproduces."""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.core.utils import setup_globals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.basecontainer import BaseContainer

import src.paths  # noqa: F401 - registers the project's resolvers, as every entry point does
from src.errors import DataError
from src.eval import evaluate
from src.predict import predict
from src.train import build, resume_checkpoint
from src.utils.build import HYDRA_KEY, INTERPOLATION, key_path
from tests.conftest import compose_config
from tests.helpers.runs import QUIET, on

setup_globals()  # Hydra's own resolvers (now, hydra, python_version), as a Hydra app has them


@dataclass(frozen=True)
class Sentinels:
    root: Path

    @property
    def victim(self) -> Path:
        return self.root / "victim.txt"

    @property
    def payload(self) -> Path:
        return self.root / "payload.txt"

    @property
    def made(self) -> Path:
        return self.root / "made_by_a_payload"

    def reset(self) -> None:
        self.victim.write_text("precious")
        self.payload.write_text("overwritten")

    def untouched(self) -> bool:
        return self.victim.read_text() == "precious" and not self.made.exists()


def resolver_payloads(s: Sentinels) -> dict[str, str]:
    """An interpolation for every registered resolver: the harmful ones with arguments that
    would write a sentinel, the others with plausible arguments."""
    copy_call = f"{{_target_: shutil.copyfile, src: {s.payload}, dst: {s.victim}}}"
    make_call = f"{{_target_: os.makedirs, name: {s.made}}}"
    known = {
        "oc.create": f"${{oc.create:{copy_call}}}",
        "oc.decode": f"${{oc.decode:'{make_call}'}}",
        "oc.env": "${oc.env:HOME}",
        "oc.select": "${oc.select:hyper_parameters.net,x}",
        "oc.deprecated": "${oc.deprecated:net}",
        "oc.dict.keys": "${oc.dict.keys:net}",
        "oc.dict.values": "${oc.dict.values:net}",
        "now": "${now:%Y-%m-%d}",
        "hydra": "${hydra:runtime.cwd}",
        "python_version": "${python_version:micro}",
        "nsm_root": "${nsm_root:}",
        "nsm_run_id": "${nsm_run_id:}",
        "nsm_run_dir": f"${{nsm_run_dir:{s.made},null,null}}",
        "nsm_config_subdir": f"${{nsm_config_subdir:{s.made},null,null}}",
    }
    return {name: known.get(name, f"${{{name}:x}}") for name in BaseContainer._resolvers}


def payload_strings(s: Sentinels) -> list[str]:
    by_resolver = resolver_payloads(s)
    return [
        *by_resolver.values(),
        "${net.dropout}",  # a node interpolation
        "prefix ${oc.env:HOME} suffix",  # inside a longer string
        "\\${oc.env:HOME}",  # escaped (still refused: nothing read from a file is resolved)
        "${oc.env:${oc.env:HOME}}",  # nested
        by_resolver["oc.create"].replace("oc.create", "oc.create "),
    ]


class CopyOnLoad:
    """Pickles as a call of shutil.copyfile: what loading without weights_only would run."""

    def __init__(self, src: Path, dst: Path) -> None:
        self.args = (str(src), str(dst))

    def __reduce__(self):
        return (shutil.copyfile, self.args)


def hydra_payloads(s: Sentinels) -> list[tuple[str, Any]]:
    """(Hydra key, its value) pairs that Hydra's instantiate would act on."""
    return [
        ("_target_", "shutil.copyfile"),
        ("_target_", "os.makedirs"),
        ("_target_", "builtins.eval"),
        ("_args_", [str(s.payload), str(s.victim)]),
        ("_partial_", True),
        ("_recursive_", True),
        ("_convert_", "all"),
    ]


# --- generated trees ------------------------------------------------------------------------
safe_text = st.text(max_size=12).filter(lambda t: INTERPOLATION not in t)
keys = safe_text.filter(lambda k: not HYDRA_KEY.match(k))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    safe_text,
)
fillers = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
# A step down into the tree: ("key", name) into a mapping, ("index", i) into a list.
steps = st.one_of(st.tuples(st.just("key"), keys), st.tuples(st.just("index"), st.integers(0, 3)))


@st.composite
def tree_with_payload(draw, s: Sentinels, kind: str):
    """(tree, path of keys to the payload inside it, the payload's own key or None)."""
    path = draw(st.lists(steps, max_size=4))
    if kind == "interpolation":
        value = draw(st.sampled_from(payload_strings(s)))
        if draw(st.booleans()):  # as a mapping's key instead of a value
            path.append(("key", value))
            value = draw(fillers)
        leaf, own = value, None
    elif kind == "hydra":
        key, value = draw(st.sampled_from(hydra_payloads(s)))
        leaf = {**draw(st.dictionaries(keys, fillers, max_size=2)), key: value}
        own = key
        if key != "_target_":  # beside a target of ours: the key alone is the payload
            leaf["_target_"] = "src.models.components.cnn.ConvNet"
    else:
        leaf, own = CopyOnLoad(s.payload, s.victim), None
    node, names = leaf, []
    for step, name in reversed(path):
        if step == "key":
            node = {**draw(st.dictionaries(keys, fillers, max_size=2)), name: node}
        else:
            before = draw(st.lists(fillers, min_size=name, max_size=name))
            node = [*before, node, *draw(st.lists(fillers, max_size=1))]
        names.insert(0, name)
    return node, names, own


# Where a generated tree goes: (path from the checkpoint's top, whether a Hydra key there is
# refused: datamodule state and the like are never built, so only `${` is looked for there).
PLACES = [
    (("hyper_parameters", "net", "dropout"), True),
    (("hyper_parameters", "net", "channels"), True),
    (("hyper_parameters", "net", "extra"), True),
    (("hyper_parameters", "heads"), True),
    (("hyper_parameters", "head_modes"), True),
    (("hyper_parameters", "train_means"), True),
    (("hyper_parameters", "new_key"), True),
    (("VIMHDataModule", "class_names"), False),
    (("datamodule_hyper_parameters", "augment"), False),
    (("lr_schedulers", 0, "extra"), False),
]


@st.composite
def hostile_checkpoints(draw, base: dict, s: Sentinels):
    """(checkpoint, the key path its refusal must name, the payload kind)."""
    kind = draw(st.sampled_from(["interpolation", "hydra", "pickle"]))
    place, hydra_checked = draw(st.sampled_from(PLACES))
    if kind == "hydra" and not hydra_checked:
        place = ("hyper_parameters", "net", "dropout")
    tree, names, own = draw(tree_with_payload(s, kind))
    ckpt = copy.copy(base)
    ckpt["hyper_parameters"] = copy.deepcopy(base["hyper_parameters"])
    for top in ("VIMHDataModule", "datamodule_hyper_parameters", "lr_schedulers"):
        ckpt[top] = copy.deepcopy(base[top])
    node = ckpt
    for name in place[:-1]:
        node = node[name]
    node[place[-1]] = tree
    expected = ""
    for name in (*place, *names, *([own] if own else [])):
        expected = key_path(expected, name)
    return ckpt, expected, kind


@pytest.fixture(scope="module")
def arena(tmp_path_factory, trained_ckpt, toy):
    """The entry points' configs, composed once (each example only rewrites the checkpoint
    file), and the sentinels the payloads aim at."""
    root = tmp_path_factory.mktemp("fuzz")
    s = Sentinels(root)
    s.reset()
    ckpt = root / "hostile.ckpt"
    shutil.copy(trained_ckpt, ckpt)
    audio = root / "audio"
    audio.mkdir()
    cfgs = {
        "eval": compose_config(
            "eval", root / "eval", [*on(toy), f"ckpt_path={ckpt}", "logger=none"]
        ),
        "predict": compose_config(
            "predict", root / "predict", [*on(toy), f"ckpt_path={ckpt}", f"audio={audio}"]
        ),
        "resume": compose_config(
            "train", root / "resume", [*on(toy), f"ckpt_path={ckpt}", "logger=none", *QUIET]
        ),
    }
    objects = build(cfgs["resume"])
    calls = {
        "eval": lambda: evaluate(cfgs["eval"]),
        "predict": lambda: predict(cfgs["predict"]),
        "resume": lambda: resume_checkpoint(cfgs["resume"], objects),
    }
    base = torch.load(trained_ckpt, weights_only=True)
    return s, ckpt, calls, base


def check_refused(arena, entry: str, data) -> None:
    s, path, calls, base = arena
    ckpt, expected, kind = data.draw(hostile_checkpoints(base, s))
    torch.save(ckpt, path)
    with pytest.raises(DataError) as info:
        calls[entry]()
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    if kind == "pickle":
        assert f"({expected} holds a Python object (shutil.copyfile)" in message, message
    else:
        assert message.startswith(f"{path}: {expected}"), (expected, message)
    assert s.untouched(), message
    s.reset()


def test_every_registered_resolver_has_a_payload(arena):
    s = arena[0]
    strings = payload_strings(s)
    for name in BaseContainer._resolvers:
        assert any(f"${{{name}:" in p for p in strings), name
    assert {"oc.create", "oc.decode", "oc.env", "now", "hydra", "nsm_root", "nsm_run_dir"} <= set(
        BaseContainer._resolvers
    )


FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,  # derandomized: nothing to replay, and no .hypothesis/ folder written
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MANY = settings(FAST, max_examples=2000)


@pytest.mark.parametrize("entry", ["eval", "predict", "resume"])
@FAST
@given(data=st.data())
def test_generated_payloads_run_nothing_and_name_their_key(arena, entry, data):
    check_refused(arena, entry, data)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["eval", "predict", "resume"])
@MANY
@given(data=st.data())
def test_many_generated_payloads_run_nothing_and_name_their_key(arena, entry, data):
    check_refused(arena, entry, data)
