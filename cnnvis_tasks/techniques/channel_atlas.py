"""The channel atlas: every chunk's channel examples merged, their patches cut, each channel described.

The reduce of ``channel-examples`` (``cnnvis-tasks channel-atlas``): the chunks'
lists (:class:`~cnnvis_tasks.mechanisms.top_examples.TopExamples`) merged into one;
each listed image decoded again as its job decoded it, once, and each channel's
patches cut from it into one strip per channel (``top/NNNNN.png``, tiles of
``patch_size`` from the left); per channel its selectivity (the share of its top
images that share its commonest label) and the classes it pushes up and down (the
mean gradient of each class's logit at the layer, over a sample of the listed
images: :mod:`cnnvis_tasks.mechanisms.channel_classes`); and ``atlas.json``
(docs/gallery.md), written last, which the gallery reads.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnvis_tasks.mechanisms.top_examples import DIRECTIONS, TopExamples, merge_files

ATLAS_FORMAT = "cnnvis-channel-atlas/1"
ATLAS_FILE = "atlas.json"
CLASSES_SHOWN = 5  # classes up and down per channel


def read_image_index(path: Path | None) -> dict[str, dict[str, Any]]:
    """Image path -> its name and label, from the image check's file (images.json)."""
    if path is None:
        return {}
    records = json.loads(Path(path).read_text(encoding="utf-8")).get("images", [])
    return {str(r["path"]): {"name": r.get("name"), "label": r.get("label")} for r in records if r.get("path")}


def selectivity(labels: Sequence[str | None]) -> dict[str, Any] | None:
    """Of a channel's top images' labels: the commonest, and what share of them carry it
    (None: none is labelled).  Ties go to the label first in name order."""
    given = [label for label in labels if label]
    if not given:
        return None
    counts = collections.Counter(given)
    label = min(counts, key=lambda name: (-counts[name], name))
    return {"label": label, "share": counts[label] / len(labels), "count": counts[label], "labelled": len(given)}


def class_directions(sums: np.ndarray, count: int, class_name: Callable[[int], str]) -> list[dict[str, Any]]:
    """Per channel, the classes whose logit its activation raises most (positive mean gradient,
    largest first) and lowers most (negative, most negative first); ``sums``: classes x
    channels, summed over ``count`` images."""
    means = sums / max(count, 1)
    found = []
    for channel in range(means.shape[1]):
        column = means[:, channel]
        order = np.argsort(-column, kind="stable")

        def entries(picked, column=column) -> list[dict[str, Any]]:
            return [{"index": int(k), "name": class_name(int(k)), "value": float(column[k])} for k in picked]

        up = [k for k in order[:CLASSES_SHOWN] if column[k] > 0]
        down = [k for k in order[::-1][:CLASSES_SHOWN] if column[k] < 0]
        found.append({"up": entries(up), "down": entries(down)})
    return found


def build_atlas(
    files: Sequence[Path],
    session: Any,
    out_dir: Path,
    *,
    images_file: Path | None = None,
    size: int | None = None,
    patch_size: int = 64,
    sample: int = 16,
    batch_size: int = 16,
    max_pixels: int | None = None,
    warn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Merge ``files`` into the atlas of ``out_dir`` (see the module doc); returns atlas.json's
    content.  ``size`` None: the size the files record."""
    from cnnvis_tasks.io.outputs import atomic_write, save_png
    from cnnvis_tasks.render.patches import empty_strip

    merged = merge_files(files)
    size = merged.header.get("size") if size is None else size
    index = read_image_index(images_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    referenced = sorted({merged.images[i] for lists in merged.lists.values() for i in lists["image"].ravel() if i >= 0})
    position = {path: k for k, path in enumerate(referenced)}
    entries = {direction: [merged.entries(direction, c) for c in range(merged.channels)] for direction in DIRECTIONS}
    strips = {
        direction: [empty_strip(len(listed), patch_size) if listed else None for listed in entries[direction]]
        for direction in DIRECTIONS
    }
    wanted: dict[str, list[tuple[str, int, int, list[float]]]] = collections.defaultdict(list)
    for direction in DIRECTIONS:
        for channel, listed in enumerate(entries[direction]):
            for slot, entry in enumerate(listed):
                wanted[entry["image"]].append((direction, channel, slot, entry["box"]))
    chosen = set(_sample(entries["top"], sample))
    sums, counted = _cut_patches(
        session, referenced, wanted, strips, chosen, merged, size, batch_size, max_pixels, patch_size, warn
    )
    channels = []
    for channel in range(merged.channels):
        strip_paths: dict[str, str | None] = {}
        for direction in DIRECTIONS:
            strip = strips[direction][channel]
            strip_paths[direction] = f"{direction}/{channel:05d}.png" if strip is not None else None
            if strip is not None:
                save_png(out_dir / strip_paths[direction], strip, {"channel": channel, "direction": direction})
        top_labels = [index.get(e["image"], {}).get("label") for e in entries["top"][channel]]
        channels.append(
            {
                "channel": channel,
                **{
                    direction: [
                        {"image": position[e["image"]], "score": e["score"], "box": e["box"], "size": e["size"]}
                        for e in entries[direction][channel]
                    ]
                    for direction in DIRECTIONS
                },
                "strips": strip_paths,
                "selectivity": selectivity(top_labels),
            }
        )
    if sums is not None:
        for channel, classes in zip(channels, class_directions(sums, counted, session.model.class_name)):
            channel["classes"] = classes
    atlas = {
        "format": ATLAS_FORMAT,
        "technique": "channel-examples",
        "model": session.model.name,
        "layer": merged.header.get("layer"),
        "statistic": merged.header.get("statistic"),
        "receptive_field": merged.header.get("receptive_field"),
        "patch_size": patch_size,
        "scanned": merged.scanned,
        "counts": merged.counts,
        "classes_from": "gradient" if sums is not None else None,
        "class_sample": counted,
        "images": [
            {"path": path, "name": index.get(path, {}).get("name"), "label": index.get(path, {}).get("label")}
            for path in referenced
        ],
        "channels": channels,
    }
    text = json.dumps(atlas, ensure_ascii=False)
    atomic_write(out_dir / ATLAS_FILE, lambda handle: handle.write(text.encode("utf-8")))
    return atlas


def _sample(top: Sequence[Sequence[Mapping[str, Any]]], count: int) -> list[str]:
    """The images the classes are measured on: each channel's best image first, then its
    second, ..., the first ``count`` distinct ones (the same whatever the chunks were)."""
    found: dict[str, None] = {}
    for slot in range(max((len(listed) for listed in top), default=0)):
        for listed in top:
            if slot < len(listed) and len(found) < count:
                found.setdefault(listed[slot]["image"])
    return list(found)


def _cut_patches(
    session, referenced, wanted, strips, chosen, merged: TopExamples, size, batch_size, max_pixels, side, warn
) -> tuple[np.ndarray | None, int]:
    """Decode each listed image once, as its job did; cut its tiles into the strips and add the
    class gradients of the sampled ones.  Returns (class gradient sums, images summed)."""
    import torch

    from cnnvis_tasks.io.images import load_batches
    from cnnvis_tasks.mechanisms.channel_classes import class_gradients
    from cnnvis_tasks.render.patches import cut_patch, put_tile
    from cnnvis_tasks.run.progress import Progress
    from cnnvis_tasks.run.session import decoding_size, input_crop

    model, layer = session.model, merged.header.get("layer")
    crop = input_crop(model, size, warn)

    def failed(k: int, error: Exception) -> None:
        warn(f"{referenced[k]}: cannot read it again ({error}); its patches are left gray")

    sums, counted, done = None, 0, 0
    batches = load_batches(referenced, decoding_size(size), batch_size, max_pixels, failed=failed, crop=crop)
    with Progress(len(referenced), "channel-atlas", quiet=session.quiet) as progress:
        for indices, batch in batches:
            pixels = (batch.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for k, picture in zip(indices, pixels):
                for direction, channel, slot, box in wanted[referenced[k]]:
                    put_tile(strips[direction][channel], slot, cut_patch(picture, box, side))
            sampled = [j for j, k in enumerate(indices) if referenced[k] in chosen]
            if sampled and layer and model.num_classes:
                inputs = model.normalize(batch[sampled].to(session.device))
                found = class_gradients(model.module, inputs, layer).double().cpu().numpy()
                sums = found if sums is None else sums + found
                counted += len(sampled)
            done += len(indices)
            progress.update(done)
    return sums, counted
