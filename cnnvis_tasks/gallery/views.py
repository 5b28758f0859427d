"""``views.html``: what to look at first in a data set, per model: the most confident
mistakes; per class, the explanations that lie most outside the object; per-class
accuracy with intervals; and the classes the model mixes up.  Every image listed
links to its page.  Pure: from a :class:`~cnnvis_tasks.gallery.browse.Catalogue` and
the per-class and confusion rows (:mod:`cnnvis_tasks.workflow.class_tables`) to the
template's values.  Imports neither torch nor click."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from cnnvis_tasks.gallery.browse import Catalogue, ModelImage

MISTAKES_SHOWN = 24
LOWEST_SHOWN = 5
CLASSES_SHOWN = 50
CONFUSIONS_SHOWN = 20


def image_page(model: str, image_id: int, prefix: str = "") -> str:
    """The link to an image's page under a model, from a page ``prefix`` away from the results folder."""
    return f"{prefix}gallery/image.html?model={quote(model, safe='')}&id={image_id}"


def index_link(model: str, **state: Any) -> str:
    """The image index opened at a filter (``class``, ``outcome``, ``sort``, ``dir``)."""
    parts = [f"model={quote(model, safe='')}"] + [f"{k}={quote(str(v), safe='')}" for k, v in state.items()]
    return "images.html#" + "&".join(parts)


def _image(catalogue: Catalogue, model: str, entry: ModelImage) -> dict[str, Any]:
    return {
        "name": entry.name,
        "href": image_page(model, entry.id),
        "thumb": catalogue.root_link[entry.name] if entry.status == "ok" else None,
        "label": entry.label_name or entry.label or "",
        "prediction": entry.prediction_name or "",
        "probability": entry.probability,
    }


def _filter(label_class: Any, sort: str | None) -> dict[str, str]:
    state = {"class": f"c{label_class}"} if label_class != "" else {}
    return state | ({"sort": sort, "dir": "asc"} if sort else {})


def box_share(image: Mapping[str, Any]) -> float | None:
    """The share of the image that its box covers (None without a box or size)."""
    box, size = image.get("box"), image.get("size")
    if not box or not size or not size[0] or not size[1]:
        return None
    width = max(0.0, min(box[2], size[0]) - max(box[0], 0))
    height = max(0.0, min(box[3], size[1]) - max(box[1], 0))
    return width * height / (size[0] * size[1])


def confident_mistakes(catalogue: Catalogue, model: str, limit: int = MISTAKES_SHOWN) -> list[dict[str, Any]]:
    """The wrong predictions, most probable first; ties in reverse name order, as the index's
    descending order has them."""
    wrong = [e for e in catalogue.models[model] if e.outcome == "wrong" and e.probability is not None]
    wrong.sort(key=lambda e: e.probability)  # stable: ties in name order, then all of it reversed
    wrong.reverse()
    return [_image(catalogue, model, entry) for entry in wrong[:limit]]


def outside_object(
    catalogue: Catalogue, model: str, method: str, measure: str, sort: str | None = None, lowest: int = LOWEST_SHOWN
) -> list[dict[str, Any]]:
    """Per label class, the images whose ``measure`` (a share of the map inside the object)
    is lowest for ``method``, with the class's mean of it and its boxes' mean share of
    the image; the classes whose explanations gain least over that share come first.  ``sort``: the
    index's order by that measure, which each class links to."""
    groups: dict[Any, list[tuple[float, float | None, ModelImage]]] = {}
    for entry in catalogue.models[model]:
        value = entry.scores.get(method, {}).get(measure)
        if value is None:
            continue
        share = box_share(catalogue.images[entry.id])
        key = entry.label_class if entry.label_class is not None else ""
        groups.setdefault(key, []).append((value, share, entry))
    classes = []
    for key, found in groups.items():
        found.sort(key=lambda item: item[0])  # stable: ties in name order
        shares = [share for _, share, _ in found if share is not None]
        mean = sum(value for value, _, _ in found) / len(found)
        mean_share = sum(shares) / len(shares) if shares else None
        first = found[0][2]
        classes.append(
            {
                "class": key,
                "name": (first.label_name or str(key)) if key != "" else "no label",
                "count": len(found),
                "mean": mean,
                "box_share": mean_share,
                "gain": mean - mean_share if mean_share is not None else mean,
                "lowest": [
                    _image(catalogue, model, entry) | {"value": value, "share": share}
                    for value, share, entry in found[:lowest]
                ],
                "href": index_link(model, **_filter(key, sort)),
            }
        )
    classes.sort(key=lambda c: (c["gain"], str(c["class"])))
    return classes


def build_views(
    catalogue: Catalogue,
    per_class: Mapping[str, Sequence[Mapping[str, Any]]],
    confusion: Mapping[str, Sequence[Mapping[str, Any]]],
    pictures: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The template's values per model.  ``per_class`` and ``confusion``: each model's rows
    of per-class.csv and confusion.csv; ``pictures``: each model's confusion picture, relative
    to the results folder."""
    views = []
    for model, entries in catalogue.models.items():
        by_class: dict[tuple[int, int], list[ModelImage]] = {}
        for entry in entries:
            if entry.outcome == "wrong" and entry.label_class is not None and entry.prediction is not None:
                by_class.setdefault((entry.label_class, entry.prediction), []).append(entry)
        inside = [m for m in catalogue.measures[model] if m.inside_object]
        localisation = []
        for measure in inside:
            for method, key in catalogue.method_keys(model).items():
                sort = f"m-{key}-{measure.name}" if measure.sorts else None
                classes = outside_object(catalogue, model, method, measure.name, sort)
                if classes:
                    shown = {"method": method, "measure": measure.label, "classes": classes[:CLASSES_SHOWN]}
                    localisation.append(shown | {"more": max(0, len(classes) - CLASSES_SHOWN)})
        classes = sorted(per_class.get(model, []), key=lambda row: (float(row["accuracy"]), int(row["class"])))
        pairs = [row for row in confusion.get(model, []) if str(row["label class"]) != str(row["predicted class"])]
        views.append(
            {
                "model": model,
                "images": len(entries),
                "mistakes": confident_mistakes(catalogue, model),
                "mistakes_href": index_link(model, outcome="wrong", sort="confidence", dir="desc"),
                "wrong": sum(entry.outcome == "wrong" for entry in entries),
                "localisation": localisation,
                "classes": [
                    dict(row) | {"href": index_link(model, **{"class": f"c{row['class']}"}, outcome="wrong")}
                    for row in classes[:CLASSES_SHOWN]
                ],
                "more_classes": max(0, len(classes) - CLASSES_SHOWN),
                "confusions": [
                    dict(row)
                    | {
                        "examples": [
                            _image(catalogue, model, entry)
                            for entry in by_class.get((int(row["label class"]), int(row["predicted class"])), [])[:3]
                        ],
                        "href": index_link(model, **{"class": f"c{row['label class']}"}, outcome="wrong"),
                    }
                    for row in pairs[:CONFUSIONS_SHOWN]
                ],
                "picture": pictures.get(model),
            }
        )
    return views
