"""Class names for a user's own model: from a file, an inline list, or the image folders.

No torch here: the workflow reads and checks class lists before any model is loaded.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cnnvis_tasks.errors import CnnvisError

SUFFIXES = (".txt", ".csv", ".json", ".yaml", ".yml")
FOLDERS = {"from": "folders"}
# Header cells a CSV class list may start with.
_INDEX_HEADERS = {"index", "idx", "id", "class_index", "class_idx", "class_id", "label_id", "label_index"}
_NAME_HEADERS = {"name", "names", "class", "classes", "class_name", "classname", "label", "labels", "label_name"}
# An object holding the list under one of these keys (an HF config.json holds 'id2label').
_NESTED_KEYS = ("classes", "class_names", "names", "labels", "id2label", "idx_to_class", "class_to_idx", "label2id")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*\Z")


def class_names(
    source: str | os.PathLike | Sequence[str] | Mapping[str, Any],
    *,
    folder_root: str | Path | None = None,
    folder_labels: Iterable[str] | None = None,
) -> list[str]:
    """:func:`read_class_list`, and a folder: its class folders (:func:`folder_classes`),
    as ``--classes DATA_FOLDER`` and ``classes: DATA_FOLDER`` give them."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return folder_classes(source)
    return read_class_list(source, folder_root=folder_root, folder_labels=folder_labels)


def read_class_list(
    source: str | os.PathLike | Sequence[str] | Mapping[str, Any],
    *,
    base_dir: str | Path = ".",
    folder_root: str | Path | None = None,
    folder_labels: Iterable[str] | None = None,
) -> list[str]:
    """Class names in the head's index order.

    ``source``: a file (relative to ``base_dir``: .txt, .csv, .json, .yaml/.yml), a list of names,
    or ``{"from": "folders"}``: the class folders of ``folder_root`` (torchvision ImageFolder's
    order), else the sorted distinct ``folder_labels``.
    """
    if isinstance(source, Mapping):
        if dict(source) != FOLDERS:
            raise CnnvisError(
                f"class list {dict(source)!r}: not understood; give a file, a list of names or {{from: folders}}"
            )
        return _from_folders(folder_root, folder_labels)
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(base_dir) / source)
    if isinstance(source, Sequence):
        return _names(list(source), "inline class list", "item")
    raise CnnvisError(f"class list {source!r}: not understood; give a file, a list of names or {{from: folders}}")


def folder_classes(root: str | Path) -> list[str]:
    """The class folders under ``root``, sorted exactly as torchvision's ImageFolder sorts them."""
    try:
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except FileNotFoundError:
        raise CnnvisError(f"image folder not found: {root}; check the path") from None
    except NotADirectoryError:
        raise CnnvisError(f"image folder {root} is a file; name the folder that holds one folder per class") from None
    except OSError as error:
        raise CnnvisError(f"cannot read image folder {root}: {error.strerror or error}") from None
    if not classes:
        raise CnnvisError(f"image folder {root} has no class folders; put each class's images in a folder of its own")
    return classes


def class_list_problem(classes: Sequence[str], head: int, where: str, *, source: str | None = None) -> str | None:
    """None when there is one class name per output of the head; else the one-line message.

    ``where`` locates the setting (``models.flowers.classes``); ``source``, if given, names where the
    names came from (a file name).
    """
    if len(classes) == head:
        return None
    count = f"{len(classes)} class name{'' if len(classes) == 1 else 's'}"
    origin = f" ({source})" if source else ""
    outputs = f"{head} output{'' if head == 1 else 's'}"
    return (
        f"config error: {where}: {count}{origin} but the model's head has {outputs}; "
        "give one name per output, in the order of the head's outputs"
    )


# -- sources -----------------------------------------------------------------------------------------


def _from_folders(folder_root: str | Path | None, folder_labels: Iterable[str] | None) -> list[str]:
    if folder_root is not None:
        return folder_classes(folder_root)
    if folder_labels is None:
        raise CnnvisError(
            "class list {from: folders}: there are no image folders to take the classes from; "
            "give the images as a folder with one folder per class, or list the class names"
        )
    classes = sorted(set(folder_labels))
    if not classes:
        raise CnnvisError(
            "class list {from: folders}: the images are in no class folders; "
            "put each class's images in a folder of its own, or list the class names"
        )
    return classes


def _read_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if path.is_dir():
        raise CnnvisError(f"class list {path} is a folder; name a file, or use {{from: folders}}")
    if suffix not in SUFFIXES:
        raise CnnvisError(f"class list {path}: unknown kind of file; give a {', '.join(SUFFIXES)} file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CnnvisError(f"class list not found: {path}; check the path") from None
    except UnicodeDecodeError:
        raise CnnvisError(f"class list {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise CnnvisError(f"cannot read class list {path}: {error.strerror or error}") from None
    if suffix == ".txt":
        return _from_text(text, path)
    if suffix == ".csv":
        return _from_csv(text, path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise CnnvisError(f"class list {path} line {error.lineno}: not valid JSON ({error.msg})") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise CnnvisError(f"class list {path}{at}: not valid YAML ({problem})") from None
    return _from_data(data, path)


def _from_text(text: str, path: Path) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line:
            raise CnnvisError(f"class list {path} line {number}: blank line; remove it or write the class name there")
    if not lines:
        raise CnnvisError(f"class list {path} is empty; write one class name per line")
    return _unique(lines, f"class list {path}", lambda i: f"line {i + 1}")


def _from_csv(text: str, path: Path) -> list[str]:
    rows = [(number, [cell.strip() for cell in row]) for number, row in enumerate(csv.reader(text.splitlines()), 1)]
    while rows and not any(rows[-1][1]):
        rows.pop()
    for number, row in rows:
        if not any(row):
            raise CnnvisError(f"class list {path} line {number}: blank line; remove it or write the class there")
    if not rows:
        raise CnnvisError(f"class list {path} is empty; write one class name per line, or index,name lines")
    width = len(rows[0][1])
    for number, row in rows:
        if len(row) > 2 or len(row) != width:
            columns = f"{len(row)} column{'' if len(row) == 1 else 's'}"
            than = f", but line {rows[0][0]} has {width}" if len(row) != width else ""
            raise CnnvisError(
                f"class list {path} line {number}: {columns}{than}; "
                "write one class name per line, or index,name (two columns) on every line"
            )
    if len(rows[0][1]) == 1:
        if rows[0][1][0].lower() in _NAME_HEADERS:
            rows = rows[1:]
        names = [row[0] for _, row in rows]
        if not names:
            raise CnnvisError(f"class list {path} has a header but no class names; write one class name per line")
        return _unique(names, f"class list {path}", lambda i: f"line {rows[i][0]}")
    # index,name or name,index: the index column is the one of whole numbers (the first if both are)
    if len(rows) == 1 and {cell.lower() for cell in rows[0][1]} <= _INDEX_HEADERS | _NAME_HEADERS:
        raise CnnvisError(f"class list {path} has a header but no class names; write index,name on each line")
    body = rows[1:] or rows
    index_column = next((c for c in (0, 1) if all(_INTEGER.match(row[c]) for _, row in body)), None)
    if index_column is None:
        raise CnnvisError(
            f"class list {path}: neither column holds whole numbers; write index,name on each line "
            "(or one class name per line)"
        )
    first = rows[0][1]
    if not _INTEGER.match(first[index_column]):
        if not {cell.lower() for cell in first} & (_INDEX_HEADERS | _NAME_HEADERS):
            raise CnnvisError(
                f"class list {path} line {rows[0][0]}: index {first[index_column]!r} is not a whole number; "
                "write index,name on each line (a header such as index,name may come first)"
            )
        rows = rows[1:]
    return _ordered(
        [(row[index_column], row[1 - index_column]) for _, row in rows],
        f"class list {path}",
        lambda i: f"line {rows[i][0]}",
    )


def _from_data(data: Any, path: Path) -> list[str]:
    where = f"class list {path}"
    if isinstance(data, list):
        return _names(data, where, "item")
    if not isinstance(data, Mapping) or not data:
        raise CnnvisError(
            f"{where} holds {'nothing' if not data else 'a ' + type(data).__name__}; "
            "give a list of class names, or a mapping of index to name"
        )
    if not _is_index_map(data):
        for key in _NESTED_KEYS:
            if key in data and isinstance(data[key], (list, Mapping)):
                return _from_data(data[key], path)
    pairs, keys = _mapping_pairs(data, where), list(data)
    return _ordered(pairs, where, lambda i: f"entry {keys[i]!r}")


def _is_index_map(data: Mapping) -> bool:
    return all(_is_integer(key) for key in data) or all(_is_integer(value) for value in data.values())


def _mapping_pairs(data: Mapping, where: str) -> list[tuple[Any, str]]:
    """(index, name) pairs of a mapping index -> name or name -> index, told by which side is numbers."""
    if all(_is_integer(key) for key in data):
        pairs = list(data.items())
    elif all(_is_integer(value) for value in data.values()):
        pairs = [(index, name) for name, index in data.items()]
    else:
        raise CnnvisError(
            f"{where}: a mapping, but neither its keys nor its values are all whole numbers; "
            "give a list of class names, or a mapping of index to name"
        )
    for _, name in pairs:
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise CnnvisError(f"{where}: class name {name!r} is not text; quote it")
    return [(index, str(name)) for index, name in pairs]


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and bool(_INTEGER.match(value)))


def _names(items: list, where: str, noun: str) -> list[str]:
    if not items:
        raise CnnvisError(f"{where} is empty; give one class name per output of the model")
    names = []
    for number, item in enumerate(items, 1):
        # YAML reads yes/no/on/off as booleans and ~/null as None: such a name must be quoted
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise CnnvisError(f'{where} {noun} {number}: {item!r} is not a class name; quote it ("...")')
        name = str(item).strip()
        if not name:
            raise CnnvisError(f"{where} {noun} {number}: empty class name; write the class name there")
        names.append(name)
    return _unique(names, where, lambda i: f"{noun} {i + 1}")


def _ordered(pairs: list[tuple[Any, str]], where: str, loc: Callable[[int], str]) -> list[str]:
    """Names in index order from (index, name) pairs; the indices must be exactly 0..N-1.

    ``loc(i)`` says where pair i is in the file ("line 3").
    """
    count = len(pairs)
    by_index: dict[int, int] = {}  # index -> which pair
    for i, (index, name) in enumerate(pairs):
        number = int(index)
        if number in by_index:
            raise CnnvisError(
                f"{where} {loc(i)}: index {number} given twice ({pairs[by_index[number]][1]!r} at "
                f"{loc(by_index[number])}, {name!r} here); give each class its own index"
            )
        if not 0 <= number < count:
            raise CnnvisError(
                f"{where} {loc(i)}: index {number}, but there are {count} classes; "
                f"the indices must run from 0 to {count - 1} with no gap"
            )
        by_index[number] = i
    # N distinct indices, all in 0..N-1: each index is there once
    order = [by_index[index] for index in range(count)]
    for i in order:
        if not pairs[i][1].strip():
            raise CnnvisError(f"{where} {loc(i)}: empty class name; write the class name there")
    return _unique([pairs[i][1].strip() for i in order], where, lambda k: loc(order[k]))


def _unique(names: list[str], where: str, loc: Callable[[int], str]) -> list[str]:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise CnnvisError(
                f"{where} {loc(i)}: class {name!r} is named twice (also at {loc(first[name])}); "
                "give each class a name of its own"
            )
        first[name] = i
    return names
