"""Per channel, the images that excite it most (and least): lists that merge.

:class:`TopExamples` keeps, for every channel of a layer, the ``k`` best entries
seen so far, each an image, its score (the channel's maximum or mean activation
on it) and the box on the model's input around the position that scored.  It is
the state of a scan over one chunk of images (the *map*) and of the merge of
every chunk's lists (the *reduce*): memory is channels x k whatever the number of
images, and merging is exact, so the lists of a data set scanned in pieces equal
those of one scan over all of it.  Order: score (highest first for ``top``,
lowest for ``bottom``), then the image's path, so that ties break the same way
however the images were split.

Saved as ``.npz`` (NumPy arrays and one JSON header); NumPy only, no torch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

DIRECTIONS = ("top", "bottom")
FORMAT = "cnnvis-top-examples/1"


class TopExamples:
    """The best ``counts[direction]`` entries per channel, for ``channels`` channels."""

    def __init__(self, channels: int, counts: Mapping[str, int], header: Mapping[str, Any] | None = None):
        self.channels = int(channels)
        self.counts = {direction: int(counts.get(direction, 0)) for direction in DIRECTIONS}
        self.header = dict(header or {})
        self.images: list[str] = []  # paths, as given to the scan
        self.sizes: list[tuple[int, int]] = []  # each image's input (width, height)
        self._index: dict[str, int] = {}
        self.scanned = 0  # images added, over every merged list
        self.lists: dict[str, dict[str, np.ndarray]] = {
            direction: _empty(self.channels, count) for direction, count in self.counts.items()
        }
        self._lock = threading.Lock()  # rows are added from writer threads

    # --- adding ---------------------------------------------------------------------------

    def image_index(self, path: str, size: tuple[int, int]) -> int:
        if path not in self._index:
            self._index[path] = len(self.images)
            self.images.append(path)
            self.sizes.append((int(size[0]), int(size[1])))
        return self._index[path]

    def add(self, path: str, size: tuple[int, int], scores: np.ndarray, boxes: np.ndarray) -> None:
        """One image: its score per channel (C,) and the box around each channel's peak (C, 4)."""
        with self._lock:
            index = self.image_index(path, size)
            self.scanned += 1
            scores = np.asarray(scores, dtype=np.float32).reshape(self.channels, 1)
            boxes = np.asarray(boxes, dtype=np.float32).reshape(self.channels, 1, 4)
            images = np.full((self.channels, 1), index, dtype=np.int64)
            for direction in DIRECTIONS:
                if self.counts[direction]:
                    self._keep(direction, scores, images, boxes)

    def _keep(self, direction: str, scores: np.ndarray, images: np.ndarray, boxes: np.ndarray) -> None:
        """Merge candidates (C, n) into a direction's lists and keep the best k per channel.
        Only the channels a candidate may enter are sorted again: a list that is full, of
        defined scores, keeps itself against candidates that are all worse than its last."""
        current = self.lists[direction]
        last_score, last_image = current["score"][:, -1], current["image"][:, -1]
        with np.errstate(invalid="ignore"):
            if direction == "top":
                beaten = np.max(np.where(np.isnan(scores), -np.inf, scores), axis=1) >= last_score
            else:
                beaten = np.min(np.where(np.isnan(scores), np.inf, scores), axis=1) <= last_score
        rows = np.nonzero(beaten | (last_image < 0) | ~np.isfinite(last_score))[0]
        if len(rows) == 0:
            return
        score = np.concatenate([current["score"][rows], scores[rows]], axis=1)
        image = np.concatenate([current["image"][rows], images[rows]], axis=1)
        box = np.concatenate([current["box"][rows], boxes[rows]], axis=1)
        order = self._order(direction, score, image)[:, : self.counts[direction]]
        current["score"][rows] = np.take_along_axis(score, order, axis=1)
        current["image"][rows] = np.take_along_axis(image, order, axis=1)
        current["box"][rows] = np.take_along_axis(box, order[..., None], axis=1)

    def _order(self, direction: str, score: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Per channel, the entries best first: by score, then by the image's path; empty
        slots (image -1) next, then undefined scores (NaN, infinite), which therefore never stay
        in a list."""
        used, inverse = np.unique(image, return_inverse=True)
        paths = np.array([self.images[i] if i >= 0 else "" for i in used], dtype=str)
        rank = np.empty(len(used), dtype=np.int64)
        rank[np.argsort(paths, kind="stable")] = np.arange(len(used))
        by_path = rank[inverse.reshape(image.shape)]
        empty = (image < 0) | ~np.isfinite(score)
        key = np.where(empty, 0.0, -score if direction == "top" else score)
        channel = np.broadcast_to(np.arange(score.shape[0])[:, None], score.shape)
        # one sort for every channel: lexsort's last key is the primary one
        order = np.lexsort((by_path.ravel(), key.ravel(), empty.ravel(), channel.ravel()))
        return order.reshape(score.shape) - (np.arange(score.shape[0]) * score.shape[1])[:, None]

    def _compact(self) -> None:
        """Forget the images no list holds any more (a merge of many scans stays small)."""
        used = sorted({int(i) for lists in self.lists.values() for i in lists["image"].ravel() if i >= 0})
        if len(used) == len(self.images):
            return
        remap = np.full(len(self.images) + 1, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        self.images = [self.images[i] for i in used]
        self.sizes = [self.sizes[i] for i in used]
        self._index = {path: i for i, path in enumerate(self.images)}
        for lists in self.lists.values():
            lists["image"] = remap[lists["image"]]

    def merge(self, other: TopExamples) -> None:
        """Take in another scan's lists (of the same layer and counts)."""
        if other.channels != self.channels:
            raise ValueError(f"cannot merge lists of {other.channels} channels into lists of {self.channels}")
        with self._lock:
            remap = np.array([self.image_index(p, s) for p, s in zip(other.images, other.sizes)] + [-1])
            self.scanned += other.scanned
            for direction in DIRECTIONS:
                count = min(self.counts[direction], other.counts[direction])
                if not count:
                    continue
                theirs = other.lists[direction]
                self._keep(direction, theirs["score"], remap[theirs["image"]], theirs["box"])
            if len(self.images) > 2 * self.channels * max(sum(self.counts.values()), 1):
                self._compact()

    # --- reading --------------------------------------------------------------------------

    def entries(self, direction: str, channel: int) -> list[dict[str, Any]]:
        """A channel's entries, best first: image path, input size, score, box (x0, y0, x1, y1)."""
        lists = self.lists[direction]
        found = []
        for image, score, box in zip(lists["image"][channel], lists["score"][channel], lists["box"][channel]):
            if image < 0:
                break
            found.append(
                {
                    "image": self.images[image],
                    "size": list(self.sizes[image]),
                    "score": float(score),
                    "box": [float(v) for v in box],
                }
            )
        return found

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the lists as ``.npz``, under a new name first (never half-written)."""
        from cnnvis_tasks.io.outputs import atomic_write

        used = sorted({int(i) for lists in self.lists.values() for i in lists["image"].ravel() if i >= 0})
        remap = np.full(len(self.images) + 1, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        header = self.header | {
            "format": FORMAT,
            "channels": self.channels,
            "counts": self.counts,
            "scanned": self.scanned,
        }
        arrays: dict[str, Any] = {
            "header": np.array(json.dumps(header)),
            "images": np.array([self.images[i] for i in used], dtype=str),
            "sizes": np.array([self.sizes[i] for i in used], dtype=np.int32).reshape(-1, 2),
        }
        for direction, lists in self.lists.items():
            arrays[f"{direction}_score"] = lists["score"]
            arrays[f"{direction}_image"] = remap[lists["image"]].astype(np.int32)
            arrays[f"{direction}_box"] = lists["box"]
        atomic_write(Path(path), lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> TopExamples:
        """A saved list; ValueError says why a file cannot be one."""
        import zipfile

        try:
            return cls._load(path)
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read it as a list of channel examples ({error})") from None

    @classmethod
    def _load(cls, path: str | Path) -> TopExamples:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise ValueError(f"{path}: not a list of channel examples ({FORMAT})")
            found = cls(header["channels"], header["counts"], header)
            found.images = [str(p) for p in data["images"]]
            found.sizes = [(int(w), int(h)) for w, h in data["sizes"]]
            found._index = {p: i for i, p in enumerate(found.images)}
            found.scanned = int(header.get("scanned", 0))
            for direction in DIRECTIONS:
                found.lists[direction] = {
                    "score": data[f"{direction}_score"].astype(np.float32),
                    "image": data[f"{direction}_image"].astype(np.int64),
                    "box": data[f"{direction}_box"].astype(np.float32),
                }
        return found


def merge_files(paths: Iterable[str | Path]) -> TopExamples:
    """Every file's lists merged into one (they must be of the same layer and counts)."""
    merged: TopExamples | None = None
    for path in paths:
        found = TopExamples.load(path)
        if merged is None or (merged.channels == 0 and found.channels):
            # a scan whose every image failed holds no channels: it merges as nothing
            found.scanned += merged.scanned if merged is not None else 0
            merged = found
            continue
        if found.channels == 0:
            merged.scanned += found.scanned
            continue
        for key in ("layer", "statistic", "counts"):
            if merged.header.get(key) != found.header.get(key):
                raise ValueError(
                    f"{path}: its {key} is {found.header.get(key)!r}, the others' {merged.header.get(key)!r}"
                )
        merged.merge(found)
    if merged is None:
        raise ValueError("no lists of channel examples to merge")
    return merged


def _empty(channels: int, count: int) -> dict[str, np.ndarray]:
    return {
        "score": np.full((channels, count), np.nan, dtype=np.float32),
        "image": np.full((channels, count), -1, dtype=np.int64),
        "box": np.zeros((channels, count, 4), dtype=np.float32),
    }
