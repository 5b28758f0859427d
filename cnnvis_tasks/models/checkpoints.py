"""Read the checkpoint files people bring: every common form, with one-line errors.

A checkpoint is a bare state dict, a training checkpoint holding one (the PyTorch
tutorial's ``model_state_dict``, Lightning's ``state_dict``, timm's ``state_dict_ema``),
a ``.safetensors`` file, a TorchScript archive or (trusted only) a pickled model.
``fit_state_dict`` then renames the keys to fit an architecture (wrapper prefixes,
DenseNet's old names).
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from cnnvis_tasks.errors import CnnvisError

# Where training checkpoints keep the model's state dict, most preferred first; the EMA copies come
# last, so that a checkpoint holding both gives the trained weights themselves.
STATE_ENTRIES = ("state_dict", "model", "model_state_dict", "net", "network", "ema", "state_dict_ema")
# Wrappers that prefix every key: DataParallel/DDP, Lightning, common training loops, torch.compile.
WRAPPER_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")
# Where class names may be stored beside the weights.
_CLASS_LISTS = ("classes", "class_names", "labels")
_CLASS_HOLDERS = ("hyper_parameters", "hparams", "meta", "metadata")

ACCEPTED_FORMS = (
    "a state dict; a dict with a "
    + ", ".join(repr(key) for key in STATE_ENTRIES[:-1])
    + f" or {STATE_ENTRIES[-1]!r} entry holding one; a .safetensors file; "
    "a TorchScript archive (arch: torchscript); a pickled model (trust_pickle: true)"
)
RESAVE = "torch.save(model.state_dict(), PATH)"

# DenseNet checkpoints from before PyTorch 0.4 name 'norm.1' what is now 'norm1' (torchvision's fix-up).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

V = TypeVar("V")


@dataclass
class Checkpoint:
    """What a checkpoint file holds: tensors, or a whole model, and maybe class names."""

    path: Path
    form: str  # in words, for messages: "state dict", "'model_state_dict' entry", "safetensors", ...
    state: dict[str, torch.Tensor] | None  # None for a TorchScript archive or a pickled model
    module: torch.nn.Module | None  # a whole model: TorchScript archive or trusted pickled nn.Module
    classes: list[str] | None  # class names stored beside the weights, in index order


def read_checkpoint(path: str | Path, *, trust_pickle: bool = False, torchscript: bool = False) -> Checkpoint:
    """Read a checkpoint file in any accepted form; a problem raises a one-line CnnvisError.

    ``torchscript``: the file must be a TorchScript archive, loaded with ``torch.jit.load``.
    ``trust_pickle``: a file holding pickled Python objects (a whole model) may be unpickled,
    which runs code from the file.
    """
    path = _existing_file(path)
    if _is_safetensors(path):
        if torchscript:
            raise _not_torchscript(path, "a safetensors file")
        return _read_safetensors(path)
    names = _zip_names(path)
    is_torchscript = names is not None and _is_torchscript(names)
    if torchscript:
        if not is_torchscript:
            raise _not_torchscript(path, "a PyTorch checkpoint" if names is not None else "not a zip archive")
        return Checkpoint(path, "TorchScript archive", None, _jit_load(path), None)
    if is_torchscript:
        raise CnnvisError(
            f"weights file {path} is a TorchScript archive (a whole compiled model), not a state dict; "
            "load it with arch: torchscript in the config (or --model torchscript on the command line)"
        )
    head = _head(path, 2)
    # torch.save writes a zip (maybe cut short, then torch.load says so) or, long ago, a pickle
    if names is None and head and not (head == b"PK" or head.startswith(b"\x80")):
        raise _not_a_checkpoint(path)
    return _interpret(path, _torch_load(path, trust_pickle))


def fit_state_dict(state: Mapping[str, V], expected_keys: Iterable[str]) -> dict[str, V]:
    """Rename a state dict's keys to fit an architecture's ``expected_keys``.

    Strips the wrapper prefixes (``module.``, ``model.``, ``net.``, ``_orig_mod.`` and their
    combinations such as ``model.module.``) when that fits more expected keys, and renames
    DenseNet's old keys. Entries that fit no expected key are kept as they are, for the strict
    load to report. Works on any values (tensors, or the shapes from ``tensor_shapes``).
    """
    expected = set(expected_keys)
    best, best_score, best_prefix = None, -1, ""
    # Shortest first, and only a strictly better fit replaces: a prefix is never stripped when
    # the keys as saved fit as well (an HF model whose real top-level child is 'model').
    for prefix in sorted(_wrapper_prefixes(state), key=lambda p: (len(p), p)):
        renamed: dict[str, V] = {}
        for key, value in state.items():
            new = _fit_key(key[len(prefix) :] if prefix and key.startswith(prefix) else key, expected)
            if new in renamed:  # two entries would collide: this prefix is not a wrapper's
                break
            renamed[new] = value
        else:
            score = sum(key in expected for key in renamed)
            if score > best_score:
                best, best_score, best_prefix = renamed, score, prefix
    if best is None:
        return dict(state)
    if best_prefix:  # a wrapper's own entries beside the model's (Lightning's loss weights): not the model's
        kept = {key for key in state if key.startswith(best_prefix)}
        best = {
            new: value for (key, _), (new, value) in zip(state.items(), best.items()) if key in kept or new in expected
        }
    return best


def head_size(state: Mapping[str, Any], head_weight_keys: Sequence[str]) -> int | None:
    """Outputs of the classifier head: rows of the first of ``head_weight_keys`` present that is 2-D.

    A 1x1 convolution head (4-D, e.g. SqueezeNet's) counts too. Values may be tensors or shapes.
    """
    for key in head_weight_keys:
        if key not in state:
            continue
        shape = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else tuple(state[key])
        if len(shape) == 2 or (len(shape) == 4 and shape[2:] == (1, 1)):
            return int(shape[0])
    return None


def tensor_shapes(
    path: str | Path, *, trust_pickle: bool = False, torchscript: bool = False
) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor in a checkpoint, cheaply: for the start-of-run check.

    Reads only the header of a safetensors file and memory-maps a torch file (no tensor data is
    read). Takes the options of ``read_checkpoint`` and raises its errors; for a whole model
    (TorchScript, pickled) gives the shapes of its ``state_dict()``.
    """
    path = _existing_file(path)
    if _is_safetensors(path) and not torchscript:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as file:
                return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises its own error types
            raise _unreadable(path, error) from None
    checkpoint = read_checkpoint(path, trust_pickle=trust_pickle, torchscript=torchscript)
    state = checkpoint.state if checkpoint.state is not None else checkpoint.module.state_dict()
    return {key: tuple(value.shape) for key, value in state.items()}


# -- reading ---------------------------------------------------------------------------------------


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CnnvisError(f"weights file not found: {path}; check the path")
    if path.is_dir():
        raise CnnvisError(f"weights file {path} is a folder; name the checkpoint file inside it")
    return path


def _is_safetensors(path: Path) -> bool:
    if path.suffix.lower() == ".safetensors":
        return True
    # Any other name: a safetensors file starts with its header's length (8 bytes) and then '{'.
    head = _head(path, 9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def _head(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(size)
    except OSError as error:
        raise _unreadable(path, error) from None


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
    except Exception as error:  # safetensors raises its own error types
        raise _unreadable(path, error) from None
    classes = None
    try:
        stored = json.loads(metadata["classes"])
    except (KeyError, TypeError, ValueError):
        stored = None
    if isinstance(stored, list):
        classes = _class_list(stored, path, "the safetensors metadata's 'classes'")
    return Checkpoint(path, "safetensors", state, None, classes)


def _zip_names(path: Path) -> list[str] | None:
    """The entries of a zip-format torch file (read from its central directory only), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _is_torchscript(names: list[str]) -> bool:
    # torch.jit.save writes '<archive>/constants.pkl' and '<archive>/code/...'; torch.save does not.
    parts = [name.split("/") for name in names]
    return any(p[1:] == ["constants.pkl"] for p in parts) and any(len(p) > 2 and p[1] == "code" for p in parts)


def _not_torchscript(path: Path, what: str) -> CnnvisError:
    return CnnvisError(
        f"weights file {path} is not a TorchScript archive ({what}); with arch: torchscript "
        "(--model torchscript) give a file saved by torch.jit.save, or name the model's architecture instead"
    )


def _jit_load(path: Path) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # TorchScript raises RuntimeError and others
        raise _unreadable(path, error) from None


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        try:
            # timm's and many training scripts' checkpoints hold their argparse arguments: plain data
            with torch.serialization.safe_globals([argparse.Namespace]):
                return _load_mapped(path, weights_only=True)
        except pickle.UnpicklingError as error:
            if "Weights only load failed" not in str(error):
                raise
            if not trust_pickle:
                raise _pickled(path, error) from None
        try:
            return _load_mapped(path, weights_only=False)
        except (ImportError, AttributeError) as error:  # the pickled model's class is not importable here
            raise CnnvisError(
                f"weights file {path} holds a pickled model whose class cannot be found here "
                f"({_first_line(error)}); where it was made, re-save it with {RESAVE}"
            ) from None
    except CnnvisError:
        raise
    except EOFError:
        raise CnnvisError(f"weights file {path} is empty or cut short; save or copy it again") from None
    except (KeyError, IndexError, pickle.UnpicklingError):  # the bytes are no pickle torch wrote
        raise _not_a_checkpoint(path) from None
    except Exception as error:  # pickle, zip and torch errors have many types
        raise _unreadable(path, error) from None


def _load_mapped(path: Path, weights_only: bool) -> Any:
    try:  # memory-mapped: pages are read when used, not all up front
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    # legacy (non-zip) checkpoints cannot be mapped
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def _not_a_checkpoint(path: Path) -> CnnvisError:
    return CnnvisError(
        f"weights file {path} is not a PyTorch checkpoint, a safetensors file or a TorchScript archive; "
        f"save the model's weights with {RESAVE}"
    )


def _pickled(path: Path, error: Exception) -> CnnvisError:
    found = _UNSUPPORTED_GLOBAL.search(str(error))
    what = f" ({found.group(1)})" if found else ""
    return CnnvisError(
        f"weights file {path} holds a pickled Python object{what}, not only tensors: loading it would run code "
        f"from the file; if you trust the file, set trust_pickle: true on this model in the config "
        f"(or pass --trust-pickle), or re-save it as a state dict with {RESAVE}"
    )


def _unreadable(path: Path, error: BaseException) -> CnnvisError:
    text = _first_line(error)
    if "central directory" in text or "zip archive" in text:
        text = "it is not a complete zip archive, so it was probably cut short"
    return CnnvisError(
        f"cannot read weights file {path}: {text}; check that it is a complete checkpoint (copy or save it again)"
    )


def _first_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip()
    line = text.splitlines()[0].strip() if text else type(error).__name__
    # torch's messages go on for several sentences on one line: keep the first
    sentence = re.match(r"(.+?\.)\s+[A-Z(]", line)
    return (sentence.group(1) if sentence else line).rstrip(".")


# -- interpreting what was loaded ------------------------------------------------------------------


def _interpret(path: Path, loaded: Any) -> Checkpoint:
    if isinstance(loaded, torch.nn.Module):
        return Checkpoint(path, "pickled model", None, loaded, None)
    if not isinstance(loaded, Mapping):
        raise CnnvisError(
            f"weights file {path} holds a {type(loaded).__name__}, not a state dict; accepted: {ACCEPTED_FORMS}; "
            f"re-save it with {RESAVE}"
        )
    classes = _stored_classes(loaded, path)
    if isinstance(loaded.get("model"), torch.nn.Module):  # {'model': <pickled model>, 'epoch': ...}
        return Checkpoint(path, "pickled model", None, loaded["model"], classes)
    found = _find_state(loaded)
    if found is None:
        keys = [str(key) for key in loaded]
        shown = ", ".join(repr(key) for key in keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
        raise CnnvisError(
            f"weights file {path} holds a dict with no state dict in it (keys: {shown or 'none'}); "
            f"accepted: {ACCEPTED_FORMS}; re-save it with {RESAVE}"
        )
    form, state = found
    return Checkpoint(path, form, state, None, classes)


def _find_state(loaded: Mapping, depth: int = 0) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(form, tensors) of a state dict, or of one found under a known entry (two levels deep at most)."""
    for entry in STATE_ENTRIES:
        value = loaded.get(entry)
        if not isinstance(value, Mapping):
            continue
        if _tensor_share(value) > 0.5:
            return f"{entry!r} entry", _tensors(value)
        if depth < 1:
            inner = _find_state(value, depth + 1)
            if inner is not None:
                return f"{entry!r}/{inner[0]}", inner[1]
    # A bare state dict, maybe with a few non-tensor values (metadata, a stray 'epoch'): dropped.
    if depth == 0 and _tensor_share(loaded) > 0.5:
        return "state dict", _tensors(loaded)
    return None


def _tensor_share(mapping: Mapping) -> float:
    if not mapping:
        return 0.0
    return sum(isinstance(value, torch.Tensor) for value in mapping.values()) / len(mapping)


def _tensors(mapping: Mapping) -> dict[str, torch.Tensor]:
    return {key: value for key, value in mapping.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}


def _stored_classes(loaded: Mapping, path: Path) -> list[str] | None:
    """Class names stored beside the weights, at the top level or in the hyper-parameters."""
    holders = [loaded] + [loaded[key] for key in _CLASS_HOLDERS if isinstance(loaded.get(key), Mapping)]
    for holder in holders:
        for key in _CLASS_LISTS:
            value = holder.get(key)
            # 'labels' may be something else (a tensor of targets): only a list of names counts
            if isinstance(value, (list, tuple)) and value and all(isinstance(name, str) for name in value):
                return _class_list(value, path, f"its {key!r} entry")
        for key in ("class_to_idx", "idx_to_class"):
            value = holder.get(key)
            if isinstance(value, Mapping) and value:
                pairs = list(value.items()) if key == "class_to_idx" else [(b, a) for a, b in value.items()]
                return _ordered(pairs, path, f"its {key!r} entry")
    return None


def _class_list(names: list, path: Path, where: str) -> list[str]:
    names = [str(name) for name in names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CnnvisError(
                f"weights file {path}: {where} names class {name!r} twice; "
                "give the class names yourself with classes: in the config (or --classes)"
            )
        seen.add(name)
    return names


def _ordered(pairs: list[tuple[Any, Any]], path: Path, where: str) -> list[str]:
    """Names in index order from (name, index) pairs; the indices must be exactly 0..N-1."""
    fix = "give the class names yourself with classes: in the config (or --classes)"
    by_index: dict[int, str] = {}
    for name, index in pairs:
        try:
            number = int(index)
            if isinstance(index, bool) or str(number) != str(index).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise CnnvisError(f"weights file {path}: {where} has index {index!r}, not a whole number; {fix}") from None
        if number in by_index:
            raise CnnvisError(
                f"weights file {path}: {where} gives index {number} to both {by_index[number]!r} and {name!r}; {fix}"
            )
        by_index[number] = str(name)
    missing = [i for i in range(len(by_index)) if i not in by_index]
    if missing:
        raise CnnvisError(
            f"weights file {path}: {where} has no class at index {missing[0]} "
            f"(indices must run from 0 to {len(by_index) - 1}); {fix}"
        )
    return _class_list([by_index[i] for i in range(len(by_index))], path, where)


# -- fitting keys ----------------------------------------------------------------------------------


def _wrapper_prefixes(keys: Iterable[str]) -> set[str]:
    """'' and each run of wrapper prefixes that starts some key ('model.', 'model.module.', ...)."""
    prefixes = {""}
    for key in keys:
        prefix, rest = "", key
        while wrapper := next((w for w in WRAPPER_PREFIXES if rest.startswith(w)), None):
            prefix, rest = prefix + wrapper, rest[len(wrapper) :]
            prefixes.add(prefix)
    return prefixes


def _fit_key(key: str, expected: set[str]) -> str:
    if key in expected:
        return key
    match = _DENSENET_OLD_KEY.match(key)
    if match and match.group(1) + match.group(2) in expected:
        return match.group(1) + match.group(2)
    return key
