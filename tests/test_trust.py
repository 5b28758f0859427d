"""The trust metrics' plumbing: methods named as text, the tables over a data set
(bootstrap intervals, the methods' order) and the gallery's view of them."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.gallery import build_gallery
from cnnvis_tasks.gallery.numbers import numbers_view
from cnnvis_tasks.technique.method import Method
from cnnvis_tasks.techniques.metrics import EXPLAINED, TABLE, TECHNIQUE, mean_curves
from cnnvis_tasks.workflow import tables


def test_a_method_is_a_technique_and_its_own_flags():
    method = EXPLAINED.parse("saliency --method guided")
    assert method.technique.name == "saliency"
    assert method.options == {"method": "guided"}
    assert method.token == "saliency-guided"
    assert method.label == "Saliency maps (guided)"
    steps = EXPLAINED.parse("integrated-gradients --steps=8 --baseline blurred")
    assert steps.options == {"steps": 8, "baseline": "blurred"}
    assert steps.token == "integrated-gradients-steps8-blurred"  # in the order given: file names keep it
    assert EXPLAINED.parse("smooth-grad --squared").options == {"squared": True}
    assert EXPLAINED.parse("smooth-grad --mean").options == {"squared": False}
    assert EXPLAINED.parse("grad-cam").options == {}


def test_a_method_as_text_is_the_method_as_an_object():
    """The text is parsed by the technique's own options into the object Python builds."""
    assert EXPLAINED.parse("grad-cam --layer _blocks.15") == Method("grad-cam", layer="_blocks.15")
    assert EXPLAINED.parse("integrated-gradients --steps=16 --method guided") == Method(
        "integrated-gradients", method="guided", steps="16"
    )
    nested = EXPLAINED.parse("smooth-grad --samples 8 --method 'integrated-gradients --steps 16'")
    assert nested == Method("smooth-grad", samples=8, method=Method("integrated-gradients", steps=16))
    assert nested.options["method"] == Method("integrated-gradients", steps=16)
    assert nested.token == "smooth-grad-samples8-ig-steps16"
    built = Method("smooth-grad", method=Method("integrated-gradients", steps=16))
    assert built.text == "smooth-grad --method 'integrated-gradients --steps 16'"
    assert EXPLAINED.parse(built.text) == built and EXPLAINED.parse(built) is built
    with pytest.raises(CnnvisError, match="grad-cam takes no target here \\(the metrics job gives it"):
        EXPLAINED.parse(Method("grad-cam", target=3))
    with pytest.raises(CnnvisError, match="integrated-gradients: steps: 0 is not in the range x>=1"):
        Method("integrated-gradients", steps=0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("feature-maps", "makes no attribution map"),
        ("grad-cam --target 3", "the metrics job gives it"),
        ("saliency --method sideways", "not one of vanilla, guided, deconv"),
        ("saliency --method", "needs a value"),
        ("grad-cam --layer 'a; rm -rf /'", "not a module path"),
        ("saliency --method guided --method deconv", "given twice"),
        ("integrated-gradients --steps 0", "--steps: 0 is not in the range x>=1"),
        ("grad-cam 'unclosed", "No closing quotation"),
        ("", "an empty method"),
        ("grad-cma", "did you mean grad-cam"),
    ],
)
def test_a_method_that_cannot_be_scored_is_refused_saying_why(text, says):
    with pytest.raises(CnnvisError, match=None) as error:
        EXPLAINED.parse(text)
    assert says in str(error.value)
    assert says in EXPLAINED.problem(text)


def test_the_workflow_refuses_a_method_it_cannot_score_before_any_job_runs():
    from cnnvis_tasks.workflow.config import ConfigError, check_config

    def config(*methods):
        return {
            "models": {"efficientnet_lite0": {}},
            "techniques": {"metrics": {"methods": list(methods), "models": {"efficientnet_lite0": {}}}},
        }

    check_config(config("grad-cam", "saliency --method guided"), check_model_names=False)
    for method, says in (
        ("grad-cam; touch /tmp/x", "method 'grad-cam; touch /tmp/x': unknown technique 'grad-cam;'"),
        ("saliency --method sideways", "'sideways' is not one of"),
    ):
        with pytest.raises(ConfigError, match="techniques.metrics.methods") as error:
            check_config(config("grad-cam", method), check_model_names=False)
        assert says in str(error.value)


def test_the_bootstrap_interval_holds_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.4, 0.1, 20), rng.normal(0.4, 0.1, 2000)
    low_few, high_few = tables.bootstrap_interval(few)
    low_many, high_many = tables.bootstrap_interval(many)
    assert low_few < few.mean() < high_few
    assert low_many < many.mean() < high_many
    # the standard error's 1.96 x: 0.1 / sqrt(n) each side, within the bootstrap's own noise
    assert high_few - low_few == pytest.approx(2 * 1.96 * few.std() / np.sqrt(20), rel=0.2)
    assert high_many - low_many == pytest.approx(2 * 1.96 * many.std() / np.sqrt(2000), rel=0.2)
    assert tables.bootstrap_interval([0.25]) == (0.25, 0.25)
    assert tables.bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def _scored(model, method, image, **numbers):
    facts = {"method": method, "explain": method, "target": 1}
    return tables.TableRow(model, image, facts, numbers, {**facts, **numbers, "curves": {"deletion": [1.0, 0.5, 0.0]}})


def test_methods_are_ordered_by_their_mean_rank_over_the_faithfulness_metrics():
    scores = [
        # A: best deletion and insertion; B: best ROAD; C: worst everywhere but randomisation
        _scored("m", "A", "x", deletion_auc=0.1, insertion_auc=0.9, road=0.2, randomisation=0.9),
        _scored("m", "B", "x", deletion_auc=0.2, insertion_auc=0.8, road=0.3, randomisation=0.5),
        _scored("m", "C", "x", deletion_auc=0.3, insertion_auc=0.7, road=0.1, randomisation=0.1),
    ]
    summary = tables.summarise(TABLE, scores)
    assert tables.group_order(TABLE, summary, "m") == ["A", "B", "C"]
    by_key = {(row["method"], row["metric"]): row for row in summary}
    assert by_key[("A", "deletion_auc")]["better"] == "lower"
    assert by_key[("B", "road")]["mean"] == pytest.approx(0.3)
    assert by_key[("C", "randomisation")]["count"] == 1


def test_metrics_tables_are_read_from_the_jobs_records(tmp_path):
    spec = {
        "models": ["m"],
        "chunks": ["000of001"],
        "settings": [{"model": "m", "technique": "metrics", "setting": "grad-cam"}],
        "records": "{model}/{technique}/{setting}/{chunk}.json",
    }
    rows = [
        {
            "image": f"i{k}.png",
            "status": "ok",
            "measured": {
                "method": "Grad-CAM",
                "explain": "grad-cam",
                "target": 3,
                "deletion_auc": 0.1 * k,
                "curves": {"deletion": [1.0, 0.1 * k]},
            },
        }
        for k in range(3)
    ] + [{"image": "broken.png", "status": "failed", "reason": "cannot decode"}]
    record = tmp_path / "m/metrics/grad-cam/000of001.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"technique": "metrics", "model": "m", "rows": rows}))
    scores = tables.read_rows(TECHNIQUE, spec, tmp_path)
    assert [s.image for s in scores] == ["i0.png", "i1.png", "i2.png"]  # the failed row has no scores
    table = tables.to_csv(TABLE.row_columns, tables.row_table(scores)).splitlines()
    assert table[0] == "model,method,explain,image,target,deletion_auc,insertion_auc,road,randomisation,localisation"
    assert table[2] == "m,Grad-CAM,grad-cam,i1.png,3,0.1,,,,"
    assert mean_curves(scores, "m") == {"Grad-CAM": {"deletion": pytest.approx([1.0, 0.1])}}


def test_the_gallery_heads_the_metrics_section_with_each_models_table():
    scores = [
        _scored("m", "Saliency <b>", f"i{k}", deletion_auc=0.3 + 0.01 * k, insertion_auc=0.5) for k in range(4)
    ] + [_scored("m", "Grad-CAM", f"i{k}", deletion_auc=0.1, insertion_auc=0.7) for k in range(4)]
    summary = [{key: str(value) for key, value in row.items()} for row in tables.summarise(TABLE, scores)]  # as CSV
    pictures = {"m": [{"src": "metrics/m-curves.png", "alt": "curves averaged over the images"}]}
    view = numbers_view(TABLE, summary, {"metrics.csv": "metrics.csv"}, pictures)
    (model,) = view["models"]
    assert [row["name"] for row in model["groups"]] == ["Grad-CAM", "Saliency <b>"]
    assert model["groups"][0]["cells"][0] == {"text": "0.100 [0.100, 0.100] (n=4)", "best": True}
    record = {
        "section": "metrics",
        "table": "m",
        "row": "i0",
        "row_label": "i0",
        "column": "c",
        "column_label": ["Grad-CAM"],
        "src": "m/metrics/i0.png",
        "status": "ok",
        "metadata": {},
    }
    page = build_gallery([record], numbers={"metrics": view})["index.html"]
    assert "Which method to trust: m" in page
    assert "<strong>0.100 [0.100, 0.100] (n=4)</strong>" in page
    assert "Saliency &lt;b&gt;" in page  # a method's name is text, not markup
    assert 'src="metrics/m-curves.png"' in page
    assert page.index("Which method to trust: m") < page.index('src="m/metrics/i0.png"')


def test_an_images_curves_are_drawn_in_one_panel_per_kind():
    from cnnvis_tasks.render import method_curves, metric_curves

    one = metric_curves({"deletion": [0.9, 0.5, 0.1], "insertion": [0.1, 0.6, 0.9]}, title="Grad-CAM")
    three = metric_curves(
        {
            "deletion": [0.9, 0.1],
            "insertion": [0.1, 0.9],
            "road_morf": [0.5],
            "road_lerf": [0.8],
            "randomisation": [0.9, 0.4, 0.1],
        }
    )
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[2] == 3
    assert three.shape[0] == one.shape[0] and three.shape[1] > 2.5 * one.shape[1]
    assert (one < 250).any()  # something is drawn
    assert method_curves({}) is None
    assert method_curves({"A": {"deletion": [1.0, 0.0]}}).shape[2] == 3


def _write_metrics_records(results, model="m", images=("a b#1.png", "cat.png", "dog.png")):
    """Two methods' records of one chunk, as the metrics jobs write them, and the spec."""
    spec = {
        "models": [model],
        "chunks": ["000of001"],
        "settings": [
            {"model": model, "technique": "metrics", "setting": setting} for setting in ("grad-cam", "saliency")
        ],
        "records": "records/{model}/{technique}/{setting}/{chunk}.json",
        "tables": [],
    }
    for k, (setting, method) in enumerate((("grad-cam", "Grad-CAM"), ("saliency", "Saliency maps"))):
        rows = [
            {
                "image": f"/data/{image}",
                "status": "ok",
                "measured": {
                    "method": method,
                    "explain": setting,
                    "target": 281,
                    "deletion_auc": 0.2 + 0.1 * k + 0.01 * i,
                    "insertion_auc": 0.6 - 0.1 * k,
                    "road": 0.5 - 0.2 * k,
                    "randomisation": None if i == 0 else 0.1 + 0.3 * k,
                    "curves": {
                        "deletion": [0.9, 0.4 + 0.1 * k, 0.0],
                        "insertion": [0.1, 0.5, 0.9],
                        "randomisation": [None if i == 0 else 0.2, 0.1],
                    },
                },
            }
            for i, image in enumerate(images)
        ]
        path = results / spec["records"].format(model=model, technique="metrics", setting=setting, chunk="000of001")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"technique": "metrics", "model": model, "rows": rows}))
    status = results / "images.json"
    status.write_text(
        json.dumps({"images": [{"name": image, "path": f"/data/{image}", "status": "ok"} for image in images]})
    )
    return spec, status


def test_trust_summary_writes_both_tables_and_the_curves_the_gallery_shows(tmp_path):
    _trust_page(tmp_path)


def _trust_page(tmp_path):
    """The trust summary and the gallery run on hand-written records: the page, checked."""
    from click.testing import CliRunner
    from test_gallery import run_gallery

    from cnnvis_tasks.cli import cli

    results = tmp_path / "results"
    spec, status = _write_metrics_records(results)
    runner = CliRunner()
    out = runner.invoke(
        cli,
        ["trust-summary", "--spec", json.dumps(spec), "--images", str(status), "--out", str(results / "metrics.csv")],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    rows = (results / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3
    assert rows[1].startswith("m,Grad-CAM,grad-cam,a b#1.png,281,0.2,0.6,0.5,")  # the name, not the path
    assert rows[1].endswith(",")  # no randomisation correlation for the first image: an empty cell
    summary = (results / "metrics-summary.csv").read_text().splitlines()
    assert "m,Grad-CAM,randomisation,0.1,0.1,0.1,2,lower" in summary  # two of three images had one
    assert "m,Saliency maps,deletion_auc,0.31,0.3,0.32,3,lower" in summary
    assert Image.open(results / "metrics" / "m-curves.png").size[0] > 600
    page = run_gallery(results, status, spec, "--metrics-summary", str(results / "metrics-summary.csv"))
    text = page.read_text()
    assert text.index("<th>Grad-CAM</th>") < text.index("<th>Saliency maps</th>")  # better first
    assert 'href="metrics.csv"' in text and 'src="metrics/m-curves.png"' in text
    return page


def test_the_trust_section_opens_in_headless_chromium(tmp_path):
    from test_gallery import ARTIFACTS, load_checker

    checker = load_checker()
    if checker.find_browser() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page check needs a real browser")
    page = _trust_page(tmp_path)
    screenshot = ARTIFACTS / "gallery-trust-chromium.png"
    result = checker.check_page(page, screenshot=screenshot)
    assert result["errors"] == []
    curves = [image for image in result["images"] if image["src"].endswith("m-curves.png")]
    assert curves and curves[0]["naturalWidth"] > 600, result["images"]


def test_a_metrics_job_scores_each_image_as_the_metrics_score_the_methods_map(tmp_path):
    """The command's recorded numbers equal the mechanisms run directly on the method's
    own map (Grad-CAM, as its command computes it), image by image, and a broken image
    fails alone."""
    import torch
    from test_shared_pass import make_images, run

    from cnnvis_tasks import compute
    from cnnvis_tasks.io.images import load_image
    from cnnvis_tasks.mechanisms import faithfulness
    from cnnvis_tasks.mechanisms.map_complexity import sparseness
    from cnnvis_tasks.models.loading import load_model

    grad_cam = EXPLAINED.parse("grad-cam")
    paths = make_images(tmp_path / "in", sizes=((48, 40), (40, 48), (48, 48)))
    (tmp_path / "in" / "zz broken.png").write_text("not an image")
    record = tmp_path / "record.json"
    settings = ["--steps", "4", "--road-steps", "2", "--randomisation-stages", "2", "--size", "48"]
    settings += ["--sensitivity-samples", "2", "--correlation-runs", "4", "--correlation-subset", "50"]
    run(
        [
            "metrics",
            "--model",
            "efficientnet_lite0",
            "--weights",
            "default",
            "--image",
            str(tmp_path / "in"),
            "--explain",
            "grad-cam",
            *settings,
            "--out-dir",
            str(tmp_path / "out"),
            "--record",
            str(record),
            "--keep-going",
            "--placeholders",
        ]
    )
    rows = json.loads(record.read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok", "ok", "ok", "failed"]
    assert "zz broken.png" in rows[3]["reason"] and "measured" not in rows[3]
    model = load_model("efficientnet_lite0", weights="default", device=torch.device("cpu"))
    for path, row in zip(paths, rows):
        image = load_image(path, 48)[None]
        cam = compute("grad-cam", model, image)
        x = model.normalize(image)
        expected = faithfulness.deletion_insertion(
            model.module, x, cam.targets, faithfulness.as_pixel_map(cam.display, tuple(x.shape[-2:])), steps=4
        )
        measured = row["measured"]
        assert measured["target"] == int(cam.targets[0])
        assert measured["deletion_auc"] == pytest.approx(float(expected["deletion_auc"][0]), abs=1e-5)
        assert measured["insertion_auc"] == pytest.approx(float(expected["insertion_auc"][0]), abs=1e-5)
        assert measured["curves"]["deletion"] == pytest.approx(expected["deletion"][0].tolist(), abs=1e-5)
        assert len(measured["curves"]["road_morf"]) == 2 and len(measured["curves"]["randomisation"]) == 2
        assert 0 <= measured["deletion_auc"] <= 1 and -1 <= (measured["randomisation"] or 0) <= 1
        pixel_map = faithfulness.as_pixel_map(cam.display, tuple(x.shape[-2:]))
        correlation = faithfulness.faithfulness_correlation(
            model.module, x, cam.targets, pixel_map, runs=4, subset=50, seed=0
        )["correlation"]
        assert measured["faithfulness_correlation"] == pytest.approx(float(correlation[0]), abs=1e-5)
        # the noise is in the model's input space: the image moves by it times the std
        std = torch.tensor(model.std).view(1, 3, 1, 1)

        def grad_cam_of(noisy, targets, image=image, x=x, std=std):
            options = {**grad_cam.values(), "batch_size": 16, "seed": 0}
            options.pop("target", None)
            # the technique itself: the public compute refuses pixels outside [0, 1], which noise may leave
            moved = grad_cam.technique.compute(model, image + (noisy - x) * std, targets, **options)
            return faithfulness.as_pixel_map(moved.display, tuple(x.shape[-2:]))

        moved = faithfulness.sensitivity(grad_cam_of, x, cam.targets, pixel_map, samples=2, seed=0, batch_size=1)
        assert measured["max_sensitivity"] == pytest.approx(float(moved["max"][0]), abs=1e-5)
        assert measured["avg_sensitivity"] == pytest.approx(float(moved["mean"][0]), abs=1e-5)
        assert measured["sparseness"] == pytest.approx(float(sparseness(pixel_map)[0]), abs=1e-6)
    picture = Image.open(tmp_path / "out" / f"{paths[0].stem}-grad-cam.png")
    assert picture.size[0] > 400  # the curves, three panels


@pytest.mark.parametrize("layout", ["pictures", "chunks"])
def test_the_metrics_refuse_large_images_sooner_than_the_other_techniques(layout):
    """Each image goes through the model dozens of times in the metrics: their own
    max_pixels (1,000,000 unless the config says otherwise) holds their jobs, the
    workflow's (4,000,000) the rest; a technique may set its own."""
    from test_plan import parse

    from cnnvis_tasks.workflow import check_config, make_plan

    def block(**more):
        return {"size": 96, "models": {"efficientnet_lite0": {}}, **more}

    settings = {
        "images": {"folder": "ds"},
        "layout": layout,
        "share_passes": False,
        "models": {"efficientnet_lite0": {}},
        "techniques": {"metrics": block(), "grad_cam": block(), "saliency": block(max_pixels=50_000)},
    }
    config = check_config(settings, check_model_names=False)
    strip = {"name": "strip.png", "path": "ds/strip.png", "status": "ok", "reason": None, "size": [4000, 20]}
    photo = {"name": "photo.png", "path": "ds/photo.png", "status": "ok", "reason": None, "size": [600, 400]}

    def limits_of(plan):
        found = {}
        for rule in plan.chunk_rules:
            arguments = list(rule.arguments)
            if "--max-pixels" in arguments:  # not the predictions: they keep the command's default
                found[rule.technique] = arguments[arguments.index("--max-pixels") + 1]
        for job in plan.jobs:
            if "--max-pixels" in job.arguments:
                found[job.arguments[0]] = str(parse(job).params["max_pixels"])
        return found

    plan = make_plan(config, [strip, photo], exists=None)
    assert limits_of(plan) == {"metrics": "1000000", "grad-cam": "4000000", "saliency": "50000"}
    if layout == "pictures":
        failures = {table["section"]: table["failures"] for table in plan.gallery_tables}
        # 4000 x 20 at shorter side 96: 19,200 x 96 = 1,843,200 pixels
        assert (
            "strip.png" in failures["metrics"]
            and "1,843,200 pixels > max_pixels 1,000,000" in (failures["metrics"]["strip.png"])
        )
        assert failures["grad-cam"] == {}
        assert set(failures["saliency"]) == {"strip.png"}  # and the photo's 144 x 96 fits 50,000
    # a technique's own limit only lowers the workflow's: below 1,000,000 the workflow's holds
    lowered = check_config(dict(settings, max_pixels=200_000), check_model_names=False)
    assert limits_of(make_plan(lowered, [photo], exists=None)) == {
        "metrics": "200000",
        "grad-cam": "200000",
        "saliency": "50000",
    }


@pytest.mark.parametrize(
    "technique, bad, good, says",
    [
        (
            "metrics",
            {"methods": ["saliency", "grad-cam --layer _blocks.99"]},
            {"methods": ["grad-cam --layer _blocks.15"]},
            "techniques.metrics.methods ('grad-cam --layer _blocks.99')",
        ),
        (
            "filter_viz",
            {"filters": [{"layer": "_blocks.1", "filter": 999}]},
            {"filters": [{"layer": "_blocks.1", "filter": 3}]},
            "filter 999 out of range for layer '_blocks.1'",
        ),
    ],
)
def test_the_workflow_start_checks_the_layers_of_scored_methods_and_the_filters(technique, bad, good, says):
    """A layer named inside a method's text, like a configured layer and filter, is checked
    against the model before any job runs; the right one passes."""
    from cnnvis_tasks.workflow import ConfigError, check_config
    from cnnvis_tasks.workflow.config import model_spec
    from cnnvis_tasks.workflow.model_check import check_models as check

    def check_models(config, cache):
        return check(config, {"efficientnet_lite0": model_spec(config, "efficientnet_lite0")}, cache)

    def config(settings):
        block = dict(settings) if technique == "metrics" else {"models": {"efficientnet_lite0": dict(settings)}}
        block.setdefault("models", {"efficientnet_lite0": {}})
        return check_config(
            {"models": {"efficientnet_lite0": {}}, "techniques": {technique: block}}, check_model_names=False
        )

    with pytest.raises(ConfigError) as error:
        check_models(config(bad), None)
    assert says in str(error.value)
    check_models(config(good), None)
