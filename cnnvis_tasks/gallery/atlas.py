"""The gallery's channel atlases: for each folder a data-set reduction wrote (the spec's
``reductions``: technique, title, model, setting, labels, folder), its ``atlas.json``
written as the small files that ``gallery/atlas.html`` and ``gallery/channel.html`` read
a page at a time (docs/gallery.md, "Channel atlases").

Images are resolved against the gallery's catalogue (their name -> their id, so that a
tile leads to the image's page) and each channel gets the filter visualisation of the
same model, layer and channel when the gallery has one (:func:`filter_pictures`).
Imports neither torch nor click."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnvis_tasks.gallery.browse import _number, slug
from cnnvis_tasks.gallery.index_files import _script, _write, replace_folder
from cnnvis_tasks.technique.options import filter_token

ATLAS_FORMAT = "cnnvis-channel-atlas/1"
ATLAS_FILE = "atlas.json"
CHANNELS_PER_PAGE = 50
SORTS = (
    {"key": "channel", "label": "channel number"},
    {"key": "selectivity", "label": "selectivity (share of the top images with one label)"},
)


@dataclass
class AtlasEntry:
    """One reduction of the spec, as index.html lists it: read (``meta``) or why not (``problem``)."""

    title: str
    model: str
    setting: str
    labels: list[str]
    folder: str
    dir: str = ""  # its folder under gallery/data/atlas/
    meta: dict[str, Any] | None = None
    problem: str | None = None
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sort -> its pages

    @property
    def href(self) -> str:
        """Its atlas page, relative to the results folder."""
        from urllib.parse import quote, urlencode

        return "gallery/atlas.html?" + urlencode({"model": self.model, "setting": self.setting}, quote_via=quote)

    def listing(self) -> dict[str, Any]:
        """What index.html shows of it."""
        meta = self.meta or {}
        return {
            "model": self.model,
            "setting": self.setting,
            "labels": self.labels,
            "href": self.href if self.meta is not None else None,
            "channels": meta.get("channels"),
            "scanned": meta.get("scanned"),
            "problem": self.problem,
        }


def filter_pictures(spec: Mapping[str, Any], model: str, layer: str, root: Path) -> tuple[str | None, dict[int, str]]:
    """The pictures of one filter of ``layer`` under ``model`` among the spec's tables without
    images: a cell whose key is the setting ``{layer}-filter{N}`` (the layer's and the filter's
    tokens in file names, :func:`~cnnvis_tasks.technique.options.filter_token`, as the planner
    joins a setting's tokens), whose file exists.  Returns the first such section's name (the
    spec's tables come in gallery order) and channel -> its picture (relative to ``root``)."""
    prefix = f"{layer}-"
    for table in spec.get("tables", []):
        if table.get("per_image") or str(table.get("table", "")) != model:
            continue
        found: dict[int, str] = {}
        for row in table.get("rows", []):
            for cell in row.get("cells", []):
                key, path = str(cell.get("key", "")), cell.get("path")
                token = key[len(prefix) :] if key.startswith(prefix) else ""
                match = re.fullmatch(r"\D*(\d+)", token)
                if not match or filter_token(match.group(1)) != token or not path:
                    continue
                if int(match.group(1)) not in found and (root / path).is_file():
                    found[int(match.group(1))] = Path(path).as_posix()
        if found:
            return str(table.get("section")), found
    return None, {}


def _examples(listed: Any, count: int) -> list[dict[str, Any]]:
    """A channel's top or bottom entries, their image an index into the atlas's images."""
    found = []
    for entry in listed or []:
        image = int(entry["image"])
        if not 0 <= image < count:
            raise ValueError(f"an entry names image {image} of {count}")
        box, size = entry.get("box"), entry.get("size")
        found.append(
            {
                "image": image,
                "score": _number(entry.get("score")),
                "box": [_number(v) for v in box] if isinstance(box, Sequence) else None,
                "size": [int(v) for v in size] if isinstance(size, Sequence) else None,
            }
        )
    return found


def _classes(classes: Any) -> dict[str, list[dict[str, Any]]] | None:
    if not isinstance(classes, Mapping):
        return None
    return {
        way: [
            {"index": item.get("index"), "name": item.get("name"), "value": _number(item.get("value"))}
            for item in classes.get(way) or []
        ]
        for way in ("up", "down")
    }


def _selectivity(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or value.get("label") is None:
        return None
    return {
        "label": str(value["label"]),
        "share": _number(value.get("share")),
        "count": int(value.get("count") or 0),
        "labelled": int(value.get("labelled") or 0),
    }


def _selectivity_order(channel: Mapping[str, Any]) -> tuple:
    """Most selective first (share, then count), channels without a label last, in number order."""
    chosen = channel["selectivity"]
    if chosen is None or chosen["share"] is None:
        return (1, 0.0, 0, channel["channel"])
    return (0, -chosen["share"], -chosen["count"], channel["channel"])


def read_atlas(
    entry: AtlasEntry,
    root: Path,
    spec: Mapping[str, Any],
    ids: Mapping[str, int] | None,
    models: Sequence[str],
    titles: Mapping[str, str] | None = None,
    page_size: int = CHANNELS_PER_PAGE,
) -> None:
    """Read ``entry``'s atlas.json into its ``meta`` and ``pages``, or say in its ``problem``
    why there is none (the reduce job failed or has not run, or its file is unreadable);
    ``ids``: image name -> its id in the image index of ``models``; ``titles``: section ->
    its title (the filter visualisations' heading)."""
    folder = root / entry.folder
    path = folder / ATLAS_FILE
    if not path.is_file():
        entry.problem = f"no {ATLAS_FILE} in {entry.folder} (its job failed or has not run)"
        return
    try:
        atlas = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(atlas, Mapping) or atlas.get("format") != ATLAS_FORMAT:
            got = atlas.get("format") if isinstance(atlas, Mapping) else type(atlas).__name__
            raise ValueError(f"its format is {got!r}, not {ATLAS_FORMAT!r}")
        _read(entry, atlas, root, spec, ids if entry.model in models else None, titles or {}, page_size)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        entry.meta, entry.pages = None, {}
        entry.problem = f"{entry.folder}/{ATLAS_FILE} cannot be read: {type(error).__name__}: {error}"


def _read(
    entry: AtlasEntry,
    atlas: Mapping[str, Any],
    root: Path,
    spec: Mapping[str, Any],
    ids: Mapping[str, int] | None,
    titles: Mapping[str, str],
    page_size: int,
) -> None:
    base = os.path.abspath(root)
    images = []
    for image in atlas["images"]:
        name = image.get("name")
        file = Path(os.path.relpath(os.path.abspath(str(image["path"])), base)).as_posix()
        number = ids.get(str(name)) if ids is not None and name is not None else None
        images.append({"id": number, "name": name, "label": image.get("label"), "file": file})
    layer = str(atlas.get("layer") or entry.setting)
    section, pictures = filter_pictures(spec, entry.model, layer, root)
    channels = []
    for channel in atlas["channels"]:
        number = int(channel["channel"])
        strips = channel.get("strips") or {}
        channels.append(
            {
                "channel": number,
                "top": _examples(channel.get("top"), len(images)),
                "bottom": _examples(channel.get("bottom"), len(images)),
                "strips": {
                    way: f"{entry.folder}/{strips[way]}" if strips.get(way) else None for way in ("top", "bottom")
                },
                "selectivity": _selectivity(channel.get("selectivity")),
                "classes": _classes(channel.get("classes")),
                "filter_viz": pictures.get(number),
            }
        )
    channels.sort(key=lambda channel: channel["channel"])
    for at, channel in enumerate(channels):
        channel["prev"] = channels[at - 1]["channel"] if at > 0 else None
        channel["next"] = channels[at + 1]["channel"] if at + 1 < len(channels) else None
    orders = {"channel": channels}
    if any(channel["selectivity"] for channel in channels):
        orders["selectivity"] = sorted(channels, key=_selectivity_order)
    entry.pages = {
        sort: [_page(listed[start : start + page_size], images, sort, n) for n, start in enumerate(starts)]
        for sort, listed in orders.items()
        for starts in [range(0, len(listed), page_size)]
    }
    entry.meta = {
        "title": entry.title,
        "technique": atlas.get("technique"),
        "model": entry.model,
        "setting": entry.setting,
        "labels": entry.labels,
        "layer": layer,
        "folder": entry.folder,
        "statistic": atlas.get("statistic"),
        "receptive_field": atlas.get("receptive_field"),
        "patch_size": int(atlas.get("patch_size") or 64),
        "scanned": atlas.get("scanned"),
        "counts": atlas.get("counts") or {},
        "classes_from": atlas.get("classes_from"),
        "channels": len(channels),
        "page_size": page_size,
        "pages": len(entry.pages["channel"]),
        "page_starts": [page["channels"][0]["channel"] for page in entry.pages["channel"]],
        "sorts": [sort for sort in SORTS if sort["key"] in orders],
        "filter_viz": {"section": section, "title": titles.get(section, section), "count": len(pictures)}
        if section
        else None,
        "image_pages": ids is not None,
    }


def _page(channels: list[dict[str, Any]], images: list[dict[str, Any]], sort: str, number: int) -> dict[str, Any]:
    """A page file's value: its channels, their entries' images an index into its own ``images``."""
    used: dict[int, int] = {}
    shown = []
    for channel in channels:
        copy = dict(channel)
        for way in ("top", "bottom"):
            copy[way] = [item | {"image": used.setdefault(item["image"], len(used))} for item in channel[way]]
        shown.append(copy)
    return {"sort": sort, "page": number, "channels": shown, "images": [images[k] for k in used]}


def atlas_entries(spec: Mapping[str, Any]) -> list[AtlasEntry]:
    """The spec's reductions, each with a folder under gallery/data/atlas/ of its own."""
    entries: list[AtlasEntry] = []
    taken: set[str] = set()
    for reduction in spec.get("reductions") or []:
        model, setting = str(reduction.get("model", "")), str(reduction.get("setting", ""))
        folder = f"{slug(model)}/{slug(setting)}"
        while folder in taken:
            folder += "_"
        taken.add(folder)
        labels = [str(label) for label in reduction.get("labels") or [setting]]
        title = str(reduction.get("title") or reduction.get("technique") or "data set")
        entries.append(AtlasEntry(title, model, setting, labels, str(reduction.get("folder", "")), dir=folder))
    return entries


def write_atlas_data(data: Path, entries: Sequence[AtlasEntry]) -> int:
    """Write ``gallery/data/atlas/`` (``data``): ``index.js``, and per atlas read its
    ``meta.js`` and page files, into a fresh folder that takes the old one's place.
    Returns the number of files written."""
    written = 0

    def fill(fresh: Path) -> None:
        nonlocal written
        index = [
            {"model": e.model, "setting": e.setting, "title": e.title, "labels": e.labels, "dir": e.dir}
            | {"channels": e.meta["channels"], "scanned": e.meta["scanned"]}
            for e in entries
            if e.meta is not None
        ]
        _write(fresh / "index.js", _script("atlas/index", {"atlases": index}))
        written += 1
        for entry in entries:
            if entry.meta is None:
                continue
            folder = fresh / entry.dir
            folder.mkdir(parents=True)
            _write(folder / "meta.js", _script(f"atlas/{entry.dir}/meta", entry.meta))
            written += 1
            for sort, pages in entry.pages.items():
                for page in pages:
                    key = f"atlas/{entry.dir}/{sort}/{page['page']}"
                    _write(folder / f"{sort}.{page['page']}.js", _script(key, page))
                    written += 1

    replace_folder(data, fill)
    return written


def reduction_listing(entries: Sequence[AtlasEntry]) -> list[dict[str, Any]]:
    """index.html's sections of reductions: one per title, in the spec's order, each listing its atlases."""
    groups: dict[str, list[AtlasEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.title, []).append(entry)
    return [
        {
            "title": title,
            "heading": title[:1].upper() + title[1:],
            "anchor": "reduction--" + slug(title),
            "entries": [entry.listing() for entry in listed],
        }
        for title, listed in groups.items()
    ]
