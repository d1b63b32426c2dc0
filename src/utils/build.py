"""Networks built from plain values: the allow-listed class, called with keyword arguments
checked against its signature. Never Hydra's `instantiate`.

Why not Hydra: `instantiate` wraps a mapping in an OmegaConf node, which resolves any string
such as `"${oc.create:{_target_: shutil.copyfile, ...}}"` and builds every nested `_target_`,
so a network config read from a checkpoint (untrusted input) could run code while naming only
allowed classes. Here a network config is data: `_target_` names an nn.Module class of
`src.models.components` (looked up, only that package is imported), every other key is an
argument of that class, every value has the argument's annotated type (numbers, bools,
strings, None, lists of these; a plain mapping, or a component config with its own
`_target_`, only where the class takes a mapping), and no string holds `${`. The only Hydra
key kept is `_recursive_: false`, which the project's configs write beside a `_target_` and
which means nothing here. Configs of the user's own run are resolved by Hydra before they
get here (`src.utils.config.plain`); values read from a checkpoint never are.
"""

from __future__ import annotations

import collections.abc as abc
import functools
import importlib
import inspect
import math
import re
import reprlib
import types
import typing
from typing import Any

from torch import nn

from src.errors import ConfigError

COMPONENTS = "src.models.components"  # the only package a config may name classes from
INTERPOLATION = "${"  # how OmegaConf interpolations (and through them, resolvers) start
HYDRA_KEY = re.compile(r"^_\w+_$")  # _target_, _args_, _partial_, _recursive_, _convert_, ...
IGNORED = {"_recursive_": False}  # what our configs write beside a `_target_`; no effect here
SCALARS = (bool, int, float, str, type(None))
MAX_INT = 2**31  # no network argument is a count this large


class _Short(reprlib.Repr):
    """Bounded reprs of plain values; any other object only by its type, since its own
    `__repr__` may do anything (an OmegaConf node's resolves interpolations)."""

    def repr_instance(self, obj: Any, level: int) -> str:
        if isinstance(obj, (bool, int, float, type(None))):
            return repr(obj)
        return f"<a {type(obj).__name__}>"


_repr = _Short()
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxdict = 6


def short(value: Any) -> str:
    """A bounded, one-line repr of a value for error messages."""
    return _repr.repr(value)


def key_path(where: str, key: Any) -> str:
    """`where.key` for identifiers, `where[key]` for list indices and other keys (one line)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{where}[{key}]"
    if isinstance(key, str) and key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{short(key)}]"


def interpolation_error(where: str, value: str, error: type[Exception]) -> Exception:
    return error(
        f"{where} = {short(value)} holds an OmegaConf interpolation ('{INTERPOLATION}'); values "
        f"read from a file are data and are never resolved: refusing it"
    )


def refuse_interpolations(obj: Any, where: str, error: type[Exception] = ConfigError) -> None:
    """Refuse any string (value or mapping key) that holds `${`, at any depth of dicts, lists
    and tuples; other objects (tensors, numbers) are not looked into. Only real dicts are
    walked: another Mapping, such as an OmegaConf node, could resolve while it is read, and
    the checks that follow refuse it as not plain."""
    if isinstance(obj, str):
        if INTERPOLATION in obj:
            raise interpolation_error(where, obj, error)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            here = key_path(where, key)
            if isinstance(key, str) and INTERPOLATION in key:
                raise error(
                    f"{here}: the key holds an OmegaConf interpolation ('{INTERPOLATION}'); "
                    f"values read from a file are data and are never resolved: refusing it"
                )
            refuse_interpolations(value, here, error)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            refuse_interpolations(value, key_path(where, i), error)


def refuse_hydra_keys(
    obj: Any, where: str, error: type[Exception] = ConfigError, components: bool = False
) -> None:
    """Refuse, naming it, every Hydra key (`_target_`, `_args_`, `_partial_`, ...) at any depth;
    with `components`, a `_target_` naming a class of `src.models.components` (and
    `_recursive_: false` beside it) is let through, for `check_component` to check."""
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            refuse_hydra_keys(value, key_path(where, i), error, components)
    if not isinstance(obj, dict):
        return
    for key, value in obj.items():
        here = key_path(where, key)
        if isinstance(key, str) and HYDRA_KEY.match(key):
            if components and key == "_target_":
                component_class(value, where, error)
            elif not (
                components and "_target_" in obj and key in IGNORED and value is IGNORED[key]
            ):
                raise error(
                    f"{here} = {short(value)} is not allowed: a network is built from its class "
                    f"and keyword values only"
                    if components
                    else f"{here} = {short(value)} is not allowed: this value is data, nothing "
                    f"is built from it"
                )
        refuse_hydra_keys(value, here, error, components)


def check_data(value: Any, where: str, error: type[Exception] = ConfigError) -> None:
    """Plain data only: scalars, lists and string-keyed mappings of them; no `${` in a string,
    no Hydra key (`_target_`, `_partial_`, ...) anywhere: nothing here is ever built."""
    refuse_interpolations(value, where, error)
    refuse_hydra_keys(value, where, error)
    _check_plain(value, where, error)


def _check_plain(value: Any, where: str, error: type[Exception]) -> None:
    if isinstance(value, SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, key_path(where, i), error)
        return
    if isinstance(value, dict):
        for key, v in value.items():
            if not isinstance(key, str):
                raise error(f"{where}: key {short(key)} is not a string")
            _check_plain(v, key_path(where, key), error)
        return
    raise error(
        f"{where}: a {type(value).__name__} value; only plain values (numbers, strings, lists, "
        f"mappings) are allowed"
    )


def component_class(target: Any, where: str, error: type[Exception] = ConfigError) -> type:
    """The class `target` names, if it is an nn.Module class of `src.models.components`."""
    refuse = (
        f"{where}._target_ = {short(target)} is not allowed: a config may only name network "
        f"classes of {COMPONENTS}; refusing to build anything from it"
    )
    if not isinstance(target, str) or not target.startswith(COMPONENTS + "."):
        raise error(refuse)
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)  # our own package only (checked above)
    except (ImportError, ValueError) as e:
        raise error(refuse) from e
    cls = getattr(module, name, None)
    if not (
        inspect.isclass(cls)
        and issubclass(cls, nn.Module)
        and cls.__module__.startswith(COMPONENTS + ".")
    ):
        raise error(refuse)
    return cls


@functools.cache
def _signature(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(named parameters, their type hints, whether it takes **kwargs) of `cls.__init__`."""
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, typing.get_type_hints(cls.__init__), var_kw


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def describe(hint: Any) -> str:
    """A type hint in words."""
    if hint is Any or hint is inspect.Parameter.empty:
        return "a plain value"
    if _is_union(hint):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {
        bool: "true or false",
        int: "an integer (|n| < 2**31)",
        float: "a finite number",
        str: "a string",
    }
    if hint in names:
        return names[hint]
    if hint is type(None):
        return "null"
    if origin in (list, tuple, abc.Sequence):
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        item = args[0] if args else Any
        return f"a list of {plural.get(item) or '(' + describe(item) + ')'}"
    if origin in (dict, abc.Mapping):
        return "a mapping"
    return f"a {getattr(hint, '__name__', hint)} (never built from a config value)"


def _matches(value: Any, hint: Any, where: str, error: type[Exception]) -> bool:
    """Whether `value` has type `hint`. A mapping where one is expected is checked in depth
    (and raises when something inside it is refused)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return isinstance(value, SCALARS)
    if _is_union(hint):
        return any(_matches(value, a, where, error) for a in typing.get_args(hint))
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_INT
    if hint is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(
                _matches(v, a, key_path(where, i), error)
                for i, (v, a) in enumerate(zip(value, args))
            )
        item = args[0] if args else Any
        return all(_matches(v, item, key_path(where, i), error) for i, v in enumerate(value))
    if origin in (dict, abc.Mapping):
        if not isinstance(value, dict):
            return False
        if "_target_" in value:  # its parent gives it what it lacks (e.g. a quantizer's dim)
            check_component(value, where, error, given=None)
        else:
            _check_plain(value, where, error)
        return True
    return False  # a class (an nn.Module, ...): no config value is one


def check_value(value: Any, hint: Any, where: str, error: type[Exception] = ConfigError) -> None:
    """Refuse `value` unless it has type `hint` (see the module doc)."""
    if not _matches(value, hint, where, error):
        raise error(f"{where} = {short(value)}: expected {describe(hint)}")


def check_component(
    cfg: Any,
    where: str,
    error: type[Exception] = ConfigError,
    given: abc.Iterable[str] | None = (),
) -> tuple[type, dict]:
    """(class, keyword arguments) of a component config, every key and value checked;
    `given` names the arguments the caller adds (e.g. `input_shape`, from the data), None
    when unknown (arguments it lacks are then not looked for)."""
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise error(f"{where} must be a config mapping with _target_, got {short(cfg)}")
    # First what is refused wherever it is, named by its own key; then each argument's type.
    refuse_interpolations(cfg, where, error)
    refuse_hydra_keys(cfg, where, error, components=True)
    cls = component_class(cfg["_target_"], where, error)
    params, hints, var_kw = _signature(cls)
    kwargs = {}
    for key, value in cfg.items():
        if not isinstance(key, str):
            raise error(f"{where}: key {short(key)} is not a string")
        here = key_path(where, key)
        if HYDRA_KEY.match(key):  # `_target_` or `_recursive_: false` (refuse_hydra_keys)
            continue
        if key not in params and not var_kw:
            raise error(
                f"{here}: {cls.__name__} takes no argument {key!r} (it takes {', '.join(params)})"
            )
        check_value(value, hints.get(key, Any), here, error)
        kwargs[key] = value
    missing = [
        n
        for n, p in params.items()
        if given is not None and p.default is p.empty and n not in kwargs and n not in given
    ]
    if missing:
        raise error(f"{where}: {cls.__name__} needs {', '.join(missing)}")
    return cls, kwargs


def build_component(
    cfg: Any, where: str, error: type[Exception] = ConfigError, **given: Any
) -> nn.Module:
    """The component `cfg` describes, checked by `check_component`, called with its keyword
    values and `given` (which wins, as a call's arguments win over a Hydra node's)."""
    cls, kwargs = check_component(cfg, where, error, given)
    return cls(**{**kwargs, **given})
