"""A user's labelled recordings as a list of files with labels, groups and given splits.

Two layouts (docs/own_data.md):

- `folder`: one sub-folder per class under a root (Speech Commands, ESC-50 sorted by class),
  giving one categorical head. Sub-folders matching `exclude` are not classes (Speech
  Commands' `_background_noise_`); `classes` picks and orders classes, `others` collects every
  other folder into one class. The collection's own split lists (Speech Commands'
  `validation_list.txt`, `testing_list.txt`) are used when present; `group_pattern` (a regex on
  the file name) names each file's group (e.g. its speaker).
- `manifest`: a CSV with a file column and one column per label, each categorical (classes
  from the column's values, or listed) or numeric (min, max, step, scale, unit); optional
  group and split columns.

Nothing here reads audio: unreadable files are found (and listed) when they are decoded.
"""

from __future__ import annotations

import csv
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.audio.io import AUDIO_SUFFIXES
from src.data.vimh.classes import MAX_CLASSES, categorical_spec
from src.data.vimh.format import SPLITS, ParamSpec
from src.errors import ConfigError, DataError, DatasetNotFoundError

LAYOUTS = ("folder", "manifest")
SPLIT_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}  # Speech Commands
LABEL_KINDS = ("categorical", "numeric")
NUMERIC_KEYS = ("type", "min", "max", "step", "scale", "unit", "description")
CATEGORICAL_KEYS = ("type", "classes", "description")


@dataclass
class Label:
    """One head: its parameter, its class names (categorical) and every file's value."""

    spec: ParamSpec
    values: np.ndarray  # (N,) float64, natural units (the class index for a categorical head)
    names: tuple[str, ...] | None = None

    @property
    def categorical(self) -> bool:
        return self.names is not None


@dataclass
class Collection:
    """The files of a collection (relative to `root` where they lie under it) and their labels."""

    layout: str
    root: Path
    name: str
    files: list[str]
    labels: list[Label]
    groups: np.ndarray | None = None  # (N,) str: files of one group never span two splits
    given: np.ndarray | None = None  # (N,) str split names from the collection ("" = train)
    split_source: str | None = None  # where `given` came from
    facts: dict = field(default_factory=dict)  # what was left out and why, for the JSON

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]

    @property
    def class_names(self) -> dict[str, list[str]]:
        return {lb.spec.name: list(lb.names) for lb in self.labels if lb.categorical}


def collect(cfg: Mapping) -> Collection:
    """The collection a `source` config describes."""
    layout = cfg.get("layout")
    if layout == "folder":
        col = folder_collection(cfg)
    elif layout == "manifest":
        col = manifest_collection(cfg)
    else:
        raise ConfigError(f"source.layout must be one of {LAYOUTS}, got {layout!r}")
    if not col.files:
        raise DataError(f"{cfg.get('path')}: the collection lists no audio files")
    return col


def check_head_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise ConfigError(f"{where}: a head name must be a non-empty string without '.'")
    return name


def source_name(cfg: Mapping, path: Path) -> str:
    """The collection's name in the dataset folder name: given, else the file or folder name,
    reduced to letters, digits, '_', '-' and '.'."""
    name = cfg.get("name") or (path.stem if path.is_file() else path.resolve().name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "audio"


def _audio_in(folder: Path) -> tuple[list[Path], int]:
    """Audio files under `folder` (recursively, sorted) and how many other files it holds."""
    found = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    audio = sorted(p for p in found if p.suffix.lower() in AUDIO_SUFFIXES)
    return audio, len(found) - len(audio)


def _posix(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --- one folder per class ------------------------------------------------------------------
def folder_collection(cfg: Mapping) -> Collection:
    root = Path(str(cfg.get("path") or ""))
    if not root.is_dir():
        raise DatasetNotFoundError(f"source.path={root}: no such folder (one sub-folder per class)")
    head = check_head_name(cfg.get("head") or "label", "source.head")
    exclude = list(cfg.get("exclude") or [])
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    left_out = [p.name for p in folders if any(fnmatch.fnmatch(p.name, e) for e in exclude)]
    folders = [p for p in folders if p.name not in left_out]
    if not folders:
        raise DataError(
            f"{root}: no class folders (sub-folders not matching source.exclude={exclude}); the "
            f"folder layout needs one sub-folder of recordings per class"
        )
    by_name = {p.name: p for p in folders}
    chosen, others = cfg.get("classes"), cfg.get("others")
    if chosen:
        chosen = [str(c) for c in chosen]
        missing = [c for c in chosen if c not in by_name]
        if missing:
            raise DataError(f"{root}: source.classes names {missing}, which are no sub-folders")
        if others is not None and str(others) in chosen:
            raise ConfigError(f"source.others={others!r} is also one of source.classes")
        rest = [n for n in by_name if n not in chosen]
        class_of = {**{n: n for n in chosen}, **({n: str(others) for n in rest} if others else {})}
        names = chosen + ([str(others)] if others and rest else [])
        unused = [] if others else rest
    else:
        if others is not None:
            raise ConfigError(
                "source.others collects the folders that source.classes leaves out; set both"
            )
        class_of = {n: n for n in by_name}
        names, unused = list(by_name), []
    check_class_count(head, names, root)
    index = {n: k for k, n in enumerate(names)}
    files, values, ignored = [], [], 0
    for folder_name, cls in class_of.items():
        audio, other = _audio_in(by_name[folder_name])
        if not audio:
            raise DataError(
                f"{by_name[folder_name]}: class folder '{folder_name}' holds no audio files "
                f"(looked for {', '.join(AUDIO_SUFFIXES)}); remove it, or leave it out with "
                f"source.exclude or source.classes"
            )
        ignored += other
        files += [_posix(p, root) for p in audio]
        values += [index[cls]] * len(audio)
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    col = Collection(
        layout="folder",
        root=root,
        name=source_name(cfg, root),
        files=files,
        labels=[Label(categorical_spec(head, len(names)), np.asarray(values, float), tuple(names))],
        facts={
            "excluded_folders": left_out,
            "unused_class_folders": unused,
            "audio_files_outside_class_folders": len(loose),
            "non_audio_files_ignored": ignored,
        },
    )
    pattern = cfg.get("group_pattern")
    if pattern:
        col.groups = groups_from_names(col.files, str(pattern), col.facts)
    given_splits(col, cfg.get("split_lists", "auto"))
    return col


def check_class_count(head: str, names: Sequence[str], where) -> None:
    if len(names) < 2:
        raise DataError(
            f"{where}: label '{head}' has {len(names)} class(es) {list(names)}; need 2 or more"
        )
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"{where}: label '{head}' has {len(names)} classes; a VIMH label is one 8-bit code, "
            f"so a categorical head holds at most {MAX_CLASSES}. Pick classes (source.classes, "
            f"source.others) or merge rare ones (docs/own_data.md)"
        )


def groups_from_names(files: list[str], pattern: str, facts: dict) -> np.ndarray:
    """Each file's group: the first capture group (or the match) of `pattern` in its name; a
    file whose name does not match is a group of its own (counted)."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"source.group_pattern={pattern!r} is no regular expression: {e}") from e
    groups, unmatched = [], 0
    for f in files:
        m = rx.search(Path(f).name)
        if m is None:
            unmatched += 1
            groups.append(f)
        else:
            groups.append(m.group(1) if rx.groups else m.group(0))
    facts["files_not_matching_group_pattern"] = unmatched
    return np.asarray(groups, dtype=object)


def given_splits(col: Collection, lists) -> None:
    """Val and test from split-list files (one relative path a line); the rest is train."""
    if lists in (None, False, "none"):
        return
    if lists == "auto":
        paths = {s: col.root / n for s, n in SPLIT_LISTS.items() if (col.root / n).is_file()}
    elif isinstance(lists, Mapping):
        unknown = set(lists) - {"val", "test"}
        if unknown:
            raise ConfigError(
                f"source.split_lists: unknown splits {sorted(unknown)}; give val and/or test"
            )
        paths = {s: col.root / str(p) for s, p in lists.items() if p}
        for s, p in paths.items():
            if not p.is_file():
                raise DatasetNotFoundError(f"source.split_lists.{s}={p}: no such file")
    else:
        raise ConfigError(
            f"source.split_lists must be auto, null or {{val: <file>, test: <file>}}, got {lists!r}"
        )
    if not paths:
        return
    where = {f: i for i, f in enumerate(col.files)}
    given = np.full(len(col), "", dtype=object)
    unmatched = {}
    for split, path in paths.items():
        entries = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        unmatched[split] = 0
        for e in entries:
            i = where.get(Path(e).as_posix())
            if i is None:  # e.g. a file of a class left out
                unmatched[split] += 1
            elif given[i] not in ("", split):
                raise DataError(f"{e} is listed in both {paths['val']} and {paths['test']}")
            else:
                given[i] = split
    col.given = given
    col.split_source = "lists: " + ", ".join(p.name for p in paths.values())
    col.facts["split_list_entries_not_converted"] = unmatched


# --- a CSV manifest ------------------------------------------------------------------------
def manifest_collection(cfg: Mapping) -> Collection:
    path = Path(str(cfg.get("path") or ""))
    if not path.is_file():
        raise DatasetNotFoundError(f"source.path={path}: no such CSV manifest")
    root = Path(str(cfg["root"])) if cfg.get("root") else path.parent
    labels_cfg = cfg.get("labels")
    if not isinstance(labels_cfg, Mapping) or not labels_cfg:
        raise ConfigError(
            "source.labels: give one entry per label column, e.g. {word: {type: categorical}, "
            "pitch: {type: numeric, min: 36, max: 84, step: 1}}"
        )
    file_col = str(cfg.get("file_column") or "file")
    group_col, split_col = cfg.get("group_column"), cfg.get("split_column")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    need = [file_col, *labels_cfg, *(c for c in (group_col, split_col) if c)]
    missing = [c for c in need if c not in columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; the header has {columns}")
    if not rows:
        raise DataError(f"{path}: the manifest has a header but no rows")

    def cells(column: str) -> list[str]:
        out = []
        for line, row in enumerate(rows, start=2):
            v = (row.get(column) or "").strip()
            if not v:
                raise DataError(f"{path}: line {line}: column '{column}' is empty")
            out.append(v)
        return out

    files = cells(file_col)
    first: dict[str, int] = {}
    for line, f in enumerate(files, start=2):
        if f in first:
            raise DataError(f"{path}: line {line}: file {f} is already listed on line {first[f]}")
        first[f] = line
    resolved = [_posix(root / f, root) if not Path(f).is_absolute() else f for f in files]
    labels = [
        parse_label(check_head_name(str(name), f"source.labels.{name}"), spec, cells(name), path)
        for name, spec in labels_cfg.items()
    ]
    col = Collection(
        layout="manifest",
        root=root,
        name=source_name(cfg, path),
        files=resolved,
        labels=labels,
        facts={"manifest_rows": len(rows)},
    )
    if group_col:
        col.groups = np.asarray(cells(str(group_col)), dtype=object)
    if split_col:
        col.given = split_values(cells(str(split_col)), cfg.get("split_values"), path, split_col)
        col.split_source = f"column '{split_col}'"
    return col


def split_values(values: list[str], mapping, path: Path, column: str) -> np.ndarray:
    """Split names from a column: its values, or mapped by `split_values` ({value: split})."""
    table = {str(k): str(v) for k, v in (mapping or {}).items()}
    bad = sorted(set(table.values()) - set(SPLITS))
    if bad:
        raise ConfigError(f"source.split_values maps to {bad}; splits are {SPLITS}")
    out = []
    for line, v in enumerate(values, start=2):
        split = table.get(v, v if not table else None)
        if split not in SPLITS:
            raise DataError(
                f"{path}: line {line}: column '{column}' = {v!r} names no split (expected one "
                f"of {sorted(table) if table else SPLITS})"
            )
        out.append("" if split == "train" else split)
    return np.asarray(out, dtype=object)


def parse_label(name: str, spec, cells: list[str], path: Path) -> Label:
    """One label column: categorical (class names) or numeric (a range with a class step)."""
    spec = dict(spec or {})
    kind = spec.get("type")
    if kind not in LABEL_KINDS:
        raise ConfigError(f"source.labels.{name}.type must be one of {LABEL_KINDS}, got {kind!r}")
    allowed = CATEGORICAL_KEYS if kind == "categorical" else NUMERIC_KEYS
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ConfigError(
            f"source.labels.{name}: unknown keys {unknown}; a {kind} label takes {allowed}"
        )
    if kind == "categorical":
        listed = spec.get("classes")
        names = [str(c) for c in listed] if listed else sorted(set(cells), key=_natural)
        check_class_count(name, names, path)
        index = {n: k for k, n in enumerate(names)}
        values = []
        for line, v in enumerate(cells, start=2):
            if v not in index:
                raise DataError(f"{path}: line {line}: '{name}' = {v!r} is not one of {names}")
            values.append(index[v])
        desc = str(spec.get("description") or "")
        spec = categorical_spec(name, len(names), desc)
        return Label(spec, np.asarray(values, float), tuple(names))
    try:
        p = ParamSpec(
            name=name,
            min=float(spec["min"]),
            max=float(spec["max"]),
            step=float(spec["step"]),
            scale=str(spec.get("scale") or "linear"),
            description=str(spec.get("description") or ""),
            unit=str(spec.get("unit") or ""),
        )
        if p.fixed:
            raise ValueError("min == max: a label that never varies cannot be learned")
        p.check_step_divides()
    except KeyError as e:
        raise ConfigError(f"source.labels.{name}: a numeric label needs {e.args[0]}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"source.labels.{name}: {e}") from e
    values = np.empty(len(cells))
    for i, v in enumerate(cells):
        try:
            values[i] = float(v)
        except ValueError:
            raise DataError(f"{path}: line {i + 2}: '{name}' = {v!r} is not a number") from None
        if not (math.isfinite(values[i]) and p.min <= values[i] <= p.max):
            raise DataError(
                f"{path}: line {i + 2}: '{name}' = {v} is outside its range [{p.min}, {p.max}]"
            )
    return Label(p, values)


def _natural(v: str):
    """Sort key: numbers by value before other strings ('2' < '10')."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)
