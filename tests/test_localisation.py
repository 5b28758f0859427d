"""Localisation: bounding boxes from a manifest, through the image lists and the resize or
crop of each job, to the share of each map's attribution inside its box."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.io.columns import Geometry, box_on_input, parse_box
from cnnvis_tasks.io.image_list import check_images, list_images
from cnnvis_tasks.io.images import load_image
from cnnvis_tasks.io.list_file import image_list_text, read_image_list, write_image_list


def write(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="PNG")
    return path


def test_a_manifest_gives_boxes_and_the_image_lists_carry_them(tmp_path):
    write(tmp_path / "cat/a.png")
    write(tmp_path / "cat/b c.png")
    write(tmp_path / "dog/d.png")
    manifest = tmp_path / "boxes.csv"
    manifest.write_text(
        "path,label,xmin,ymin,xmax,ymax\n"
        "cat/a.png,tabby,4,2.5,30,28\n"
        "cat/b c.png,tabby,,,,\n"  # no box for this one
        "dog/d.png,n02085620,0,0,40,30\n"
    )
    listing = list_images(manifest=manifest)
    assert [(entry.name, entry.columns.get("box")) for entry in listing.images] == [
        ("cat/a.png", (4.0, 2.5, 30.0, 28.0)),
        ("cat/b c.png", None),
        ("dog/d.png", (0.0, 0.0, 40.0, 30.0)),
    ]
    records = check_images(listing.images)
    assert [record.get("box") for record in records] == [[4.0, 2.5, 30.0, 28.0], None, [0.0, 0.0, 40.0, 30.0]]
    image_list = tmp_path / "chunk.csv"
    write_image_list(image_list, records)
    assert image_list.read_text().splitlines()[0] == "name,path,label,bytes,mtime_ns,box"
    assert [(entry.name, entry.label, entry.columns.get("box")) for entry in read_image_list(image_list)] == [
        ("cat/a.png", "tabby", (4.0, 2.5, 30.0, 28.0)),
        ("cat/b c.png", "tabby", None),
        ("dog/d.png", "n02085620", (0.0, 0.0, 40.0, 30.0)),
    ]
    # a list without boxes keeps the columns it always had (its jobs are not re-run)
    plain = [{key: value for key, value in record.items() if key != "box"} for record in records]
    assert image_list_text(plain).splitlines()[0] == "name,path,label,bytes,mtime_ns"


@pytest.mark.parametrize(
    "header, row, says",
    [
        ("path,xmin,ymin,xmax", "a.png,1,1,5", "needs all of xmin, ymin, xmax, ymax (no ymax)"),
        ("path,xmin,ymin,xmax,ymax", "a.png,1,1,5,", "line 2: a box is 4 numbers"),
        ("path,xmin,ymin,xmax,ymax", "a.png,5,1,2,4", "line 2: a box needs xmax > xmin and ymax > ymin"),
        ("path,xmin,ymin,xmax,ymax", "a.png,1,1,nan,4", "line 2: a box's coordinates must be finite"),
    ],
)
def test_a_broken_box_stops_the_listing_naming_its_line(tmp_path, header, row, says):
    manifest = tmp_path / "boxes.csv"
    manifest.write_text(f"{header}\n{row}\n")
    with pytest.raises(CnnvisError, match="boxes.csv") as error:
        list_images(manifest=manifest)
    assert says in str(error.value)


def test_box_texts():
    assert parse_box("1, 2 3,4") == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(ValueError, match="4 numbers"):
        parse_box("1 2 3")


def input_box(box, width, height, size, crop=None):
    return box_on_input(box, Geometry(width, height, size, crop))


def test_a_box_follows_the_resize_and_the_centre_crop():
    # 400 x 200, shorter side to 100: everything halves
    assert input_box((100, 50, 300, 150), 400, 200, 100) == (50, 25, 150, 75)
    # --size 0 keeps the image; a box beyond its edges is clipped to them
    assert input_box((-10, 5, 500, 150), 400, 200, 0) == (0, 5, 400, 150)
    # a fixed-size model: the central 200 x 200 square (x from 100 to 300) at 100 x 100
    assert input_box((100, 50, 300, 150), 400, 200, 0, crop=100) == (0, 25, 100, 75)
    assert input_box((150, 0, 250, 200), 400, 200, 0, crop=100) == (25, 0, 75, 100)
    assert input_box((0, 0, 50, 200), 400, 200, 0, crop=100) is None  # all of it cut off


@pytest.mark.parametrize("size, crop", [(60, None), (0, None), (0, 48)])
def test_a_moved_box_covers_the_same_pixels_on_the_input(tmp_path, size, crop):
    """A white rectangle on black: on the input the image becomes, the moved box holds the
    white and the rest stays black (but for a pixel of resampling at the edges)."""
    box = (50, 20, 110, 70)
    pixels = np.zeros((90, 160, 3), np.uint8)
    pixels[box[1] : box[3], box[0] : box[2]] = 255
    path = tmp_path / "rect.png"
    Image.fromarray(pixels).save(path)
    image = load_image(path, size, crop=crop)[0].numpy()
    x0, y0, x1, y1 = input_box(box, 160, 90, size, crop)
    inside = np.zeros_like(image, dtype=bool)
    inside[int(np.ceil(y0)) + 1 : int(y1) - 1, int(np.ceil(x0)) + 1 : int(x1) - 1] = True
    outside = np.ones_like(image, dtype=bool)
    outside[int(y0) - 1 : int(np.ceil(y1)) + 1, max(0, int(x0) - 1) : int(np.ceil(x1)) + 1] = False
    assert inside.sum() > 100 and outside.sum() > 100
    assert image[inside].min() > 0.95
    assert image[outside].max() < 0.05


def _share(raw: np.ndarray, box) -> float:
    """The share of positive attribution inside ``box``, pixel by pixel (an independent loop)."""
    inside = total = 0.0
    height, width = raw.shape
    for i in range(height):
        for j in range(width):
            value = max(float(raw[i, j]), 0.0)
            total += value
            if box[0] <= j + 0.5 < box[2] and box[1] <= i + 0.5 < box[3]:
                inside += value
    return inside / total


def test_a_metrics_job_records_the_share_of_each_map_inside_its_box(tmp_path):
    """Boxes from an image list (and the same boxes from --box) reach the metrics in input
    pixels: the recorded share equals the share of the raw map inside the moved box; an
    image without a box has none."""
    from test_shared_pass import make_images, run

    paths = make_images(tmp_path / "in", sizes=((64, 48), (48, 64), (64, 64)))
    boxes = [(8, 4, 40, 30), None, (30.5, 10, 64, 60)]
    records = [
        {"name": path.name, "path": str(path), "label": None, "fingerprint": None, "box": box}
        for path, box in zip(paths, boxes)
    ]
    image_list = tmp_path / "list.csv"
    write_image_list(image_list, records)
    quick = ["--no-deletion-insertion", "--no-road", "--randomisation-stages", "0", "--size", "40"]
    common = ["metrics", "--model", "efficientnet_lite0", "--weights", "default", "--explain", "saliency", *quick]
    run(
        [
            *common,
            "--image-list",
            str(image_list),
            "--out-dir",
            str(tmp_path / "listed"),
            "--rendering",
            "raw",
            "--record",
            str(tmp_path / "listed.json"),
        ]
    )
    run(
        [
            *common,
            *[arg for path in paths for arg in ("--image", str(path))],
            *[arg for box in boxes for arg in ("--box", ",".join(map(str, box)) if box else "none")],
            "--out-dir",
            str(tmp_path / "given"),
            "--record",
            str(tmp_path / "given.json"),
        ]
    )
    rows = json.loads((tmp_path / "given.json").read_text())["rows"]
    for path, box, row in zip(paths, boxes, rows):
        raw = np.load(tmp_path / "listed" / f"{path.name}.raw.npy")
        assert raw.shape[0] == 40 or raw.shape[1] == 40
        if box is None:
            assert row["measured"]["localisation"] is None
            continue
        width, height = Image.open(path).size
        expected = _share(raw, input_box(box, width, height, 40))
        assert 0.05 < expected < 0.95
        assert row["measured"]["localisation"] == pytest.approx(expected, abs=1e-5)
    listed = json.loads((tmp_path / "listed.json").read_text())["rows"]
    assert [row["measured"]["localisation"] for row in listed] == [row["measured"]["localisation"] for row in rows]


METRICS_CONFIG = {
    "images": {"manifest": "ds/boxes.csv"},
    "chunk_size": 2,
    "device": "cpu",
    "models": {"efficientnet_lite0": {}},
    "techniques": {
        "metrics": {"methods": ["grad-cam"], "size": 64, "models": {"efficientnet_lite0": {}}},
        "grad_cam": {"size": 64, "models": {"efficientnet_lite0": {}}},
    },
}


def _statuses():
    boxes = [[1, 2, 30, 40], None, [0.5, 0, 8, 9.25]]
    return [
        {"name": f"im{k}.png", "path": f"ds/im{k}.png", "label": None, "status": "ok", "reason": None}
        | ({"box": box} if box else {})
        for k, box in enumerate(boxes)
    ]


@pytest.mark.parametrize("layout", ["pictures", "chunks"])
def test_the_workflow_hands_each_image_its_box_in_either_layout(tmp_path, layout):
    from test_plan import parse

    from cnnvis_tasks.workflow import check_config, make_plan

    config = check_config(dict(METRICS_CONFIG, layout=layout), check_model_names=False)
    plan = make_plan(config, _statuses(), exists=None)
    if layout == "chunks":
        listed = []
        for chunk in plan.chunks:
            path = tmp_path / f"{chunk}.csv"
            write_image_list(path, plan.image_list_records(chunk))
            listed += read_image_list(path)
        assert {entry.name: entry.columns.get("box") for entry in listed} == {
            "im0.png": (1, 2, 30, 40),
            "im1.png": None,
            "im2.png": (0.5, 0, 8, 9.25),
        }
        return
    given = {}
    for job in plan.jobs:
        context = parse(job)
        if job.arguments[0] == "metrics":
            for image, box in zip(context.params["images"], context.params["boxes"]):
                given[str(image)] = box
        else:
            assert "boxes" not in context.params and "--box" not in job.arguments  # Grad-CAM reads no boxes
    assert given == {"ds/im0.png": "1 2 30 40", "ds/im1.png": "none", "ds/im2.png": "0.5 0 8 9.25"}


@pytest.mark.parametrize(
    "boxes, says",
    [
        (["1,2,3,4", "none", "1,1,2,2"], "got 2 images but 3 --box"),
        (["1,2,3"], "a box is 4 numbers"),
        (["5,1,2,4"], "xmax > xmin"),
    ],
)
def test_a_wrong_box_on_the_command_line_is_a_usage_error(tmp_path, boxes, says):
    from click.testing import CliRunner

    from cnnvis_tasks.cli import cli

    images = [str(write(tmp_path / name)) for name in ("a.png", "b.png")]
    arguments = ["metrics", *[a for image in images for a in ("--image", image)]]
    arguments += [a for box in boxes for a in ("--box", box)] + ["--out-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 2 and "Invalid value for --box" in result.output, result.output
    assert says in result.output and "Traceback" not in result.output


def test_a_manifests_masks_reach_the_metrics_as_a_column_of_the_image_list(tmp_path):
    """A per-image input added as one column: the manifest's mask column rides in the image
    list, is resized with its image and scored; a mask that does not fit fails its image alone."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from cnnvis_tasks.cli import cli
    from cnnvis_tasks.io.columns import Geometry, mask_on_input

    write(tmp_path / "a.png", (40, 30))
    write(tmp_path / "b.png", (40, 30))
    write(tmp_path / "c.png", (40, 30))
    left_half = np.zeros((30, 40), np.uint8)
    left_half[:, :20] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(left_half).save(tmp_path / "masks/a.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "masks/c.png")  # not its image's size
    manifest = tmp_path / "set.csv"
    manifest.write_text("path,label,mask\na.png,cat,masks/a.png\nb.png,cat,\nc.png,cat,masks/c.png\n")
    listing = list_images(manifest=manifest)
    assert [entry.columns.get("mask") for entry in listing.images] == [
        str(tmp_path / "masks/a.png"),
        None,
        str(tmp_path / "masks/c.png"),
    ]
    image_list = tmp_path / "chunk.csv"
    write_image_list(image_list, check_images(listing.images))
    assert image_list.read_text().splitlines()[0] == "name,path,label,bytes,mtime_ns,mask"
    assert [entry.columns for entry in read_image_list(image_list)] == [
        {"mask": str(tmp_path / "masks/a.png")},
        {},
        {"mask": str(tmp_path / "masks/c.png")},
    ]
    # resized with its image (shorter side 15: 20 x 15), nearest neighbour: still the left half
    on_input = mask_on_input(str(tmp_path / "masks/a.png"), Geometry(40, 30, 15, None))
    assert on_input.shape == (15, 20) and on_input[:, :10].all() and not on_input[:, 10:].any()

    record, out = tmp_path / "record.json", tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["metrics", "--model", "resnet18", "--weights", "random", "--device", "cpu", "--threads", "1"]
        + ["--image-list", str(image_list), "--size", "30", "--explain", "saliency", "--no-deletion-insertion"]
        + ["--no-road", "--randomisation-stages", "0", "--out-dir", str(out), "--rendering", "raw"]
        + ["--keep-going", "--record", str(record)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(record.read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "ok", "failed"]
    assert "mask" in rows[2]["reason"] and "20 x 20, its image 40 x 30" in rows[2]["reason"]
    assert rows[1]["measured"].get("mask_share") is None  # no mask: no share
    pixel_map = np.load(out / "a.png.raw.npy").clip(min=0)
    expected = pixel_map[:, :20].sum() / pixel_map.sum()
    assert rows[0]["measured"]["mask_share"] == pytest.approx(expected, rel=1e-5)
