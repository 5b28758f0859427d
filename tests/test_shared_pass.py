"""cnnvis-tasks shared-pass: one forward and one backward per batch for several techniques,
writing byte for byte what the separate commands write."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnvis_tasks.cli import cli
from cnnvis_tasks.io.list_file import write_image_list

REPO = Path(__file__).resolve().parent.parent
DEVICE = ["--device", "cpu", "--threads", "1", "--quiet"]


def make_images(folder: Path, sizes=((40, 30), (30, 40), (40, 30), (36, 36), (40, 30))) -> list[Path]:
    """Small images of a few sizes (the batches then split by size too)."""
    sources = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, size in enumerate(sizes):
        path = folder / f"im{k}.png"
        Image.open(REPO / "images" / sources[k % len(sources)]).convert("RGB").resize(size).save(path)
        paths.append(path)
    return paths


def jobs(out: Path, extra: str = "") -> list[str]:
    """Every technique that shares the pass, with every output, each in its own folder."""
    return [
        f"saliency --method vanilla --out-dir {out}/saliency --record {out}/saliency.json "
        "--rendering gray --rendering color --rendering raw " + extra,
        f"grad-cam --layer auto --out-dir {out}/grad-cam --record {out}/grad-cam.json "
        "--rendering gray --rendering heatmap --rendering overlay --rendering raw " + extra,
        f"grad-cam-plus-plus --out-dir {out}/gcpp --record {out}/gcpp.json --colormap viridis --alpha 0.3 " + extra,
        f"xgrad-cam --out-dir {out}/xgrad --record {out}/xgrad.json --rendering raw --rendering gray " + extra,
        f"hires-cam --out-dir {out}/hires --record {out}/hires.json --rendering gray " + extra,
        f"layer-cam --out-dir {out}/layer --record {out}/layer.json --rendering overlay " + extra,
    ]


def run(arguments: list[str]):
    result = CliRunner().invoke(cli, [*arguments, *DEVICE])
    assert result.exit_code == 0, result.output
    return result


def run_separately(common: list[str], images: list[str], job_texts: list[str]) -> None:
    for text in job_texts:
        words = shlex.split(text)
        run([words[0], *common, *images, *words[1:]])


def run_shared(common: list[str], images: list[str], job_texts: list[str]):
    return run(["shared-pass", *common, *images, *[a for text in job_texts for a in ("--job", text)]])


def assert_same_files(separate: Path, shared: Path, close: str | None = None) -> int:
    """Every file of ``separate`` (no other) is in ``shared`` with the same bytes; returns how many.

    Files under the folder ``close`` need only be close: raw arrays to 1e-5 of their largest
    value, pictures to one level of each pixel, for rows whose batch differs between the two."""
    import numpy as np
    from PIL import Image

    names = sorted(p.relative_to(separate) for p in separate.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file())
    different = []
    for name in names:
        if (separate / name).read_bytes() == (shared / name).read_bytes():
            continue
        if close is not None and name.parts[0] == close and name.suffix in (".npy", ".png"):
            if name.suffix == ".npy":
                a, b = np.load(separate / name), np.load(shared / name)
                if a.shape == b.shape and np.abs(a - b).max() <= 1e-5 * max(np.abs(a).max(), 1e-30):
                    continue
            else:
                a = np.asarray(Image.open(separate / name), dtype=np.int16)
                b = np.asarray(Image.open(shared / name), dtype=np.int16)
                if a.shape == b.shape and np.abs(a - b).max() <= 1:
                    continue
        different.append(name)
    assert different == []
    return len(names)


def moved(folder: Path, text: str, to: Path) -> str:
    return text.replace(str(folder), str(to))


@pytest.mark.parametrize(
    ("model", "weights", "layers"),
    [("efficientnet_lite0", "default", ("_blocks.4", "_conv_head")), ("resnet18", "random", ("layer2", "layer4.1"))],
)
def test_the_shared_pass_writes_the_separate_commands_files_byte_for_byte(tmp_path, model, weights, layers):
    images = ["--image", str(tmp_path / "in")]
    make_images(tmp_path / "in")
    common = ["--model", model, "--weights", weights, "--seed", "3"]
    extra = "--size 48 --batch-size 3 --keep-going --placeholders"
    feature = (
        f"feature-maps --layer {layers[0]} --layer {layers[1]} --channels 16 --out-dir {{out}}/fm "
        f"--rendering grid --rendering raw --record {{out}}/fm.json {extra}"
    )
    # a CAM at a named layer, beside the automatic one: two gradient layers in one backward
    named = f"grad-cam --layer {layers[1]} --out-dir {{out}}/gc-named --rendering gray --rendering raw {extra}"
    separate = [*jobs(tmp_path / "a", extra), feature.format(out=tmp_path / "a"), named.format(out=tmp_path / "a")]
    shared = [moved(tmp_path / "a", text, tmp_path / "b") for text in separate]
    run_separately(common, images, separate)
    run_shared(common, images, shared)
    # 5 images: saliency 3 files, grad-cam 4, ++ 3, xgrad 2, hires 1, layer 1, fm 2 x 2, named 2; 7 records
    assert assert_same_files(tmp_path / "a", tmp_path / "b") == 5 * (3 + 4 + 3 + 2 + 1 + 1 + 4 + 2) + 7
    record = json.loads((tmp_path / "b" / "grad-cam.json").read_text())
    assert [row["status"] for row in record["rows"]] == ["ok"] * 5


def test_targets_by_label_from_an_image_list_and_an_unlabelled_image(tmp_path):
    """Saliency explains the labels, Grad-CAM the top-1 class (two backwards, one
    forward); an image without a label fails in saliency only.

    The separate saliency job leaves the unlabelled image out of its batch, while the shared
    backward runs over every image of the batch (Grad-CAM explains them all); float32
    convolutions may round differently by batch size on some CPUs, so saliency's files need
    only be close (its raw gradients to 1e-5)."""
    paths = make_images(tmp_path / "in", sizes=((40, 30),) * 4)
    labels = ["281", "n03063599", None, "967"]  # tabby, a WordNet ID (coffee mug), none, espresso
    write_image_list(
        tmp_path / "list.csv",
        [{"name": p.name, "path": str(p), "label": label, "fingerprint": [1, 2]} for p, label in zip(paths, labels)],
    )
    images = ["--image-list", str(tmp_path / "list.csv")]
    common = ["--model", "efficientnet_lite0", "--weights", "default"]
    extra = "--size 40 --keep-going --placeholders"
    separate = [
        f"saliency --target label --out-dir {tmp_path}/a/s --rendering gray --rendering raw "
        f"--record {tmp_path}/a/s.json {extra}",
        f"grad-cam --out-dir {tmp_path}/a/g --rendering overlay --record {tmp_path}/a/g.json {extra}",
        f"feature-maps --layer _blocks.2 --out-dir {tmp_path}/a/f --record {tmp_path}/a/f.json {extra}",
    ]
    run_separately(common, images, separate)
    run_shared(common, images, [moved(tmp_path / "a", text, tmp_path / "b") for text in separate])
    assert assert_same_files(tmp_path / "a", tmp_path / "b", close="s") == 4 * 4 + 3
    from cnnvis_tasks.io.outputs import read_metadata

    first = read_metadata(tmp_path / "b" / "s" / "im0.png.gray.png")
    assert first["target"] == {"index": 281, "name": "tabby"}
    assert read_metadata(tmp_path / "b" / "s" / "im1.png.gray.png")["target"]["index"] == 504
    statuses = {
        name: [row["status"] for row in json.loads((tmp_path / "b" / f"{name}.json").read_text())["rows"]]
        for name in ("s", "g", "f")
    }
    assert statuses == {"s": ["ok", "ok", "failed", "ok"], "g": ["ok"] * 4, "f": ["ok"] * 4}


def test_a_broken_image_fails_alone_in_every_job(tmp_path):
    make_images(tmp_path / "in", sizes=((40, 30),) * 4)
    (tmp_path / "in" / "im1b.png").write_text("not an image")
    images = ["--image", str(tmp_path / "in")]
    common = ["--model", "resnet18", "--weights", "random"]
    extra = "--size 32 --batch-size 4 --keep-going --placeholders"
    separate = [
        f"saliency --out-dir {tmp_path}/a/s --rendering gray --record {tmp_path}/a/s.json {extra}",
        f"layer-cam --out-dir {tmp_path}/a/l --rendering gray --record {tmp_path}/a/l.json {extra}",
        f"feature-maps --layer layer1 --out-dir {tmp_path}/a/f --record {tmp_path}/a/f.json {extra}",
    ]
    run_separately(common, images, separate)
    result = run_shared(common, images, [moved(tmp_path / "a", text, tmp_path / "b") for text in separate])
    assert assert_same_files(tmp_path / "a", tmp_path / "b") == 3 * 5 + 3
    for name in ("s", "l", "f"):
        rows = json.loads((tmp_path / "b" / f"{name}.json").read_text())["rows"]
        assert [Path(row["image"]).name for row in rows if row["status"] == "failed"] == ["im1b.png"]
    assert result.output.count("im1b.png") >= 3  # each job says so


def test_a_job_that_cannot_share_the_pass_is_refused_saying_why(tmp_path):
    make_images(tmp_path / "in", sizes=((40, 30),))
    base = ["shared-pass", "--model", "resnet18", "--weights", "random", "--image", str(tmp_path / "in")]
    grad_cam = ["--job", f"grad-cam --out-dir {tmp_path}/g"]
    guided = CliRunner().invoke(
        cli, [*base, *grad_cam, "--job", f"saliency --method guided --out-dir {tmp_path}/s", *DEVICE]
    )
    assert guided.exit_code == 2
    assert "--method guided changes the backward" in guided.output
    kernels = CliRunner().invoke(cli, [*base, *grad_cam, "--job", f"kernels --layer conv1 --out {tmp_path}/k.png"])
    assert kernels.exit_code == 2 and "kernels cannot share the pass" in kernels.output
    model_in_job = CliRunner().invoke(cli, [*base, "--job", f"grad-cam --model vgg16 --out-dir {tmp_path}/g"])
    assert model_in_job.exit_code == 2 and "give --model to shared-pass itself" in model_in_job.output
    sizes = CliRunner().invoke(cli, [*base, *grad_cam, "--job", f"saliency --size 64 --out-dir {tmp_path}/s"])
    assert sizes.exit_code == 2 and "same --size" in sizes.output
    twice = CliRunner().invoke(cli, [*base, *grad_cam, "--job", f"layer-cam --out-dir {tmp_path}/g"])
    assert twice.exit_code == 2 and "would be written by two jobs" in twice.output
    assert not (tmp_path / "g").exists() and not (tmp_path / "s").exists()


def test_one_forward_and_one_backward_serve_three_techniques(tmp_path, monkeypatch):
    import cnnvis_tasks.run.runner as runner

    counts = {"forward": 0, "backward": 0}
    load = runner.load_model

    def counting_load(*args, **kwargs):
        model = load(*args, **kwargs)
        model.module.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
        return model

    grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        counts["backward"] += 1
        return grad(*args, **kwargs)

    monkeypatch.setattr(runner, "load_model", counting_load)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    make_images(tmp_path / "in", sizes=((40, 30),) * 3)
    images = ["--image", str(tmp_path / "in")]
    common = ["--model", "resnet18", "--weights", "random"]
    separate = [
        f"saliency --size 32 --out-dir {tmp_path}/a/s --rendering gray",
        f"grad-cam --size 32 --out-dir {tmp_path}/a/g --rendering overlay",
        f"feature-maps --size 32 --layer layer2 --out-dir {tmp_path}/a/f",
    ]
    run_separately(common, images, separate)
    assert counts == {"forward": 3, "backward": 2}  # one batch of 3 images: a forward per command
    counts.update(forward=0, backward=0)
    run_shared(common, images, [moved(tmp_path / "a", text, tmp_path / "b") for text in separate])
    assert counts == {"forward": 1, "backward": 1}
    assert assert_same_files(tmp_path / "a", tmp_path / "b") == 9


# --- the pictures layout -----------------------------------------------------------------

PICTURES_CONFIG = {
    "layout": "pictures",
    "device": "cpu",
    "models": {"efficientnet_lite0": {}},
    "techniques": {
        "saliency": {
            "size": 64,
            "methods": ["vanilla", "guided"],
            "renderings": ["gray"],
            "models": {"efficientnet_lite0": {}},
        },
        "grad_cam": {"size": 64, "renderings": ["overlay"], "raw": True, "models": {"efficientnet_lite0": {}}},
        "feature_maps": {"size": 64, "channels": 8, "models": {"efficientnet_lite0": {"layers": ["_blocks.4"]}}},
    },
}


def test_the_pictures_layout_shares_a_pass_per_model_and_chunk():
    """The jobs of one chunk that can share a pass become one shared-pass job whose outputs
    are theirs and whose --job texts each technique's own command takes; guided saliency
    keeps its job; the summary and the gallery still see every technique's records."""
    import copy
    import shlex

    from test_plan import parse

    from cnnvis_tasks.cli import cli
    from cnnvis_tasks.workflow import check_config, make_plan

    names = ["chelsea.png", "coffee.png", "n {x}.png"]
    statuses = [{"name": n, "path": f"images/{n}", "status": "ok", "reason": None, "size": [60, 40]} for n in names]
    separate = make_plan(
        check_config(copy.deepcopy(PICTURES_CONFIG) | {"share_passes": False}, check_model_names=False),
        statuses,
        exists=None,
    )
    plan = make_plan(check_config(copy.deepcopy(PICTURES_CONFIG), check_model_names=False), statuses, exists=None)
    rules = {job.rule: job for job in plan.jobs}
    assert sorted(rules) == [
        "predictions_efficientnet_lite0_chunk000of001",
        "saliency_efficientnet_lite0_guided_chunk000of001",
        "shared_pass_efficientnet_lite0_chunk000of001",
    ]
    shared = rules["shared_pass_efficientnet_lite0_chunk000of001"]
    assert [(m.technique, m.setting) for m in shared.members] == [  # in gallery order
        ("feature-maps", "_blocks.4"),
        ("saliency", "vanilla"),
        ("grad-cam", "auto"),
    ]
    members = {(job.technique, job.setting): job for job in separate.jobs}
    assert shared.members == tuple(members[(m.technique, m.setting)] for m in shared.members)
    assert shared.outputs == tuple(o for m in shared.members for o in m.outputs)
    assert shared.images == tuple(f"images/{n}" for n in names) and shared.untracked  # the brace: untracked
    assert sorted(plan.records) == sorted(separate.records)
    specs = (plan.spec, separate.spec)
    settings = [sorted(json.dumps(s, sort_keys=True) for s in spec.pop("settings")) for spec in specs]
    assert specs[0] == specs[1] and settings[0] == settings[1]  # the same, but for the order of the settings
    context = parse(shared)
    assert [str(image) for image in context.params["images"]] == [f"images/{n}" for n in names]
    for text, member in zip(context.params["jobs"], shared.members):
        words = shlex.split(text)
        command = cli.commands[words[0]]
        own = command.make_context(words[0], words[1:])  # each technique's own command takes its text
        assert "--image" not in words and own.params["record"] is not None
        assert text == member.member_text
        head = len(member.head)
        assert words[1:] == [
            w for w in member.arguments[head:] if w not in member.images and w != "--image"
        ] + shlex.split(member.runtime_command)


@pytest.mark.slow
def test_a_pictures_layout_run_writes_the_same_pictures_with_and_without_shared_passes(tmp_path):
    import copy
    import os
    import time

    import yaml
    from test_workflow import make_copy, planned, snakemake

    config = copy.deepcopy(PICTURES_CONFIG)
    workdir = make_copy(tmp_path / "wf", images=("chelsea.png", "coffee.png", "rocket.jpg"), config=config)
    assert {rule for rule in planned(workdir, by_rule=True) if rule.startswith("shared_pass")} == {
        "shared_pass_efficientnet_lite0_chunk000of001"
    }
    snakemake(workdir)
    results = workdir / "results"

    def pictures() -> dict:
        return {
            p.relative_to(results): p.read_bytes()
            for p in results.glob("efficientnet_lite0/**/*.*")
            if p.suffix in (".png", ".npy") and p.is_file()  # a folder is named by its image: chelsea.png/
        }

    shared = pictures()
    assert planned(workdir) == {}
    after = {"summary": 1, "class_summary": 1, "gallery": 1, "all": 1}
    # a deleted picture of a shared technique: the shared job runs again, nothing else
    picture = next(p for p in results.glob("efficientnet_lite0/grad-cam/**/*.png") if p.is_file())
    picture.unlink()
    assert planned(workdir, by_rule=True) == {"shared_pass_efficientnet_lite0_chunk000of001": 1, **after}
    snakemake(workdir)
    assert picture.is_file() and planned(workdir) == {}
    # a changed setting of one member: the shared job (guided saliency keeps its own job)
    changed = copy.deepcopy(config)
    changed["techniques"]["grad_cam"]["alpha"] = 0.3
    (workdir / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    assert planned(workdir, by_rule=True) == {"shared_pass_efficientnet_lite0_chunk000of001": 1, **after}
    # a touched image (Snakemake compares small inputs by checksum: times alone here): every job over it
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    later = time.time_ns() + 10**9
    os.utime(workdir / "images" / "coffee.png", ns=(later, later))
    assert planned(workdir, "--max-checksum-file-size", "0", by_rule=True) == {
        "shared_pass_efficientnet_lite0_chunk000of001": 1,
        "saliency_efficientnet_lite0_guided_chunk000of001": 1,
        "predictions_efficientnet_lite0_chunk000of001": 1,
        "image_status": 1,
        **after,
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config | {"share_passes": False}, sort_keys=False))
    shutil.rmtree(results / "efficientnet_lite0")
    snakemake(workdir)
    separate = pictures()
    # 3 images: saliency vanilla and guided gray, grad-cam overlay and raw, feature maps grid
    assert len(separate) == 3 * 5 and separate == shared


def test_a_group_too_long_for_one_command_keeps_its_jobs_and_logs_stay_in_the_results():
    """A pictures-layout member names every picture of its chunk; Linux refuses one
    argument over 128 KiB, so a group whose --job text would pass plan.MAX_JOB_TEXT keeps
    its jobs apart.  A shared job's log lies in the results folder even when a folder
    above it is called logs."""
    import copy

    from cnnvis_tasks.workflow import check_config, make_plan
    from cnnvis_tasks.workflow.sharing import MAX_JOB_TEXT

    def plan(count, length, results="results"):
        names = [f"{'x' * length}{k:04d}.png" for k in range(count)]
        statuses = [{"name": n, "path": f"ds/{n}", "status": "ok", "reason": None, "size": [60, 40]} for n in names]
        config = copy.deepcopy(PICTURES_CONFIG) | {"chunk_count": 1, "results": results}
        return make_plan(check_config(config, check_model_names=False), statuses, exists=None)

    small = plan(8, 10, results="/srv/logs/run1")
    (shared,) = [job for job in small.jobs if job.technique == "shared-pass"]
    assert shared.log == "/srv/logs/run1/logs/efficientnet_lite0/shared-pass/chunk000of001.log"
    assert shared.benchmark.startswith("/srv/logs/run1/benchmarks/")
    chunked = make_plan(
        check_config(
            copy.deepcopy(PICTURES_CONFIG) | {"layout": "chunks", "results": "/srv/logs/run1"}, check_model_names=False
        ),
        [{"name": "a.png", "path": "ds/a.png", "status": "ok", "reason": None, "size": [60, 40]}],
        exists=None,
    )
    (rule,) = [rule for rule in chunked.chunk_rules if rule.technique == "shared-pass"]
    assert rule.log == "/srv/logs/run1/logs/efficientnet_lite0/shared-pass/{chunk}.log"
    # 300 images with long names: saliency's text names 300 pictures of about 250 characters
    large = plan(300, 200)
    longest = max(len(" ".join(job.arguments).encode()) for job in large.jobs)
    assert longest > MAX_JOB_TEXT
    assert not any(job.technique == "shared-pass" for job in large.jobs)
    assert {job.technique for job in large.jobs} >= {"saliency", "grad-cam", "feature-maps"}
