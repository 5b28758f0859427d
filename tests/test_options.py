"""One parser per option: the config check, the command line and the Python verb take a
value through the same :meth:`Option.parse`, and a method given as text is parsed by its
technique's own options into the object Python builds."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import cnnvis_tasks as cv
from cnnvis_tasks.cli import cli
from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.technique import FILTER, FLOAT, INT, LAYER, TARGET, Option
from cnnvis_tasks.techniques import get_technique
from cnnvis_tasks.techniques.smooth_grad import SMOOTHED, method_token
from cnnvis_tasks.workflow.config import ConfigError, check_config


def test_a_value_is_converted_to_its_kind_from_any_edge():
    steps = Option("steps", INT, 16, minimum=1)
    assert steps.parse("8") == steps.parse(8) == steps.parse(8.0) == steps.parse(torch.tensor(8)) == 8
    assert steps.parse(None) is None
    lr = Option("lr", FLOAT, 0.1, above=0)
    assert lr.parse("0.5") == lr.parse(0.5) == 0.5
    assert Option("filter", FILTER).parse("all") is None and Option("filter", FILTER).parse("3") == 3
    assert Option("target", TARGET).parse("top1") is None and Option("target", TARGET).parse("tabby") == "tabby"
    for option, value in ((steps, "8"), (lr, "0.5"), (Option("filter", FILTER), "3")):
        assert option.parse(option.parse(value)) == option.parse(value)  # a parsed value parses to itself


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (Option("steps", INT, minimum=1), 0, "0 is not in the range x>=1"),
        (Option("steps", INT, minimum=1), "abc", "'abc' is not an integer"),
        (Option("steps", INT, minimum=1), 2.5, "2.5 is not an integer"),
        (Option("steps", INT, minimum=1), True, "True is not an integer"),
        (Option("lr", FLOAT, above=0), 0, "0.0 is not in the range x>0"),
        (Option("lr", FLOAT, above=0), "nan", "'nan' is not a number"),
        (Option("size", INT, minimum=0, maximum=4096), 20000, "20000 is not in the range 0<=x<=4096"),
        (Option("layer", LAYER), "a; rm -rf /", "'a; rm -rf /' is not a module path"),
        (Option("layer", LAYER), nn.Conv2d(1, 1, 1), "a Conv2d is not a module path"),
        (Option("filter", FILTER), -1, "channel index must be >= 0, got -1"),
    ],
)
def test_a_bad_value_is_one_line_saying_why(option, value, message):
    with pytest.raises(ValueError) as error:
        option.parse(value)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def _config(technique: str, **settings) -> dict:
    return {
        "models": {"efficientnet_lite0": {}},
        "techniques": {technique.replace("-", "_"): {**settings, "models": {"efficientnet_lite0": {}}}},
    }


@pytest.mark.parametrize(
    ("technique", "option", "value", "config_key"),
    [
        ("metrics", "explain", "saliency --method sideways", "methods[0]"),
        ("metrics", "explain", "grad-cam --target 3", "methods[0]"),
        ("smooth-grad", "method", "integrated-gradients --baseline blurred", "methods[0]"),
        ("smooth-grad", "method", "grad-cam", "methods[0]"),
        ("grad-cam", "colormap", "jett", "colormap"),
        ("integrated-gradients", "steps", 0, "steps"),
        ("saliency", "size", 20000, "size"),
        ("saliency", "method", "gided", "methods[0]"),
    ],
)
def test_the_same_bad_value_gets_the_same_words_from_the_config_the_command_and_python(
    technique, option, value, config_key, tmp_path
):
    described = get_technique(technique).option(option)
    with pytest.raises(ValueError) as parsed:
        described.parse(value)
    said = str(parsed.value)

    key = described.config_key
    with pytest.raises(ConfigError) as config_error:
        check_config(_config(technique, **{key: [value] if described.repeatable else value}), check_model_names=False)
    assert f"config key techniques.{technique.replace('-', '_')}.{config_key}: {said}" in str(config_error.value)

    command = [technique, described.flag, str(value), "--out-dir", str(tmp_path), "--image", "x.png"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{described.flag}': {said}" in " ".join(result.output.split())

    with pytest.raises(CnnvisError) as python_error:
        cv.compute(technique, _net(), torch.rand(1, 3, 8, 8), **{option: value})
    assert str(python_error.value) == f"{technique}: {option}: {said}"


def test_the_help_shows_each_option_as_click_types_did():
    text = CliRunner().invoke(cli, ["integrated-gradients", "--help"], terminal_width=200).output
    assert "--steps INTEGER RANGE" in text and "[default: 50; x>=1]" in text
    assert "--rule [gausslegendre|trapezoid]" in text
    assert "--size INTEGER RANGE" in text and "0<=x<=4096" in text
    assert "--target top1|INDEX|LABEL" in text
    assert "--method [vanilla|guided|deconv]" in text
    text = CliRunner().invoke(cli, ["metrics", "--help"], terminal_width=200).output
    assert "--explain 'TECHNIQUE [FLAGS]'" in text


def test_smoothgrad_averages_a_method_given_as_text_or_as_an_object():
    assert SMOOTHED.parse("integrated-gradients --steps 8") == cv.Method("integrated-gradients", steps=8)
    assert SMOOTHED.parse("guided") == cv.Method("saliency", method="guided")
    # the file names of the plain words are what they were
    assert [method_token(word) for word in ("vanilla", "guided", "deconv", "gradient-x-input")] == [
        "vanilla",
        "guided",
        "deconv",
        "gxi",
    ]
    assert method_token("integrated-gradients") == "ig"
    assert method_token("integrated-gradients --steps 8 --rule trapezoid") == "ig-steps8-ruletrapezoid"
    assert method_token(cv.Method("gradient-x-input", method="guided")) == "gxi-guided"
    with pytest.raises(CnnvisError, match="integrated-gradients takes no baseline here"):
        SMOOTHED.parse(cv.Method("integrated-gradients", baseline="blurred"))

    net, pixels = _net(), torch.rand(2, 3, 8, 8)
    quick = {"samples": 2, "noise": 0.1}
    as_object = cv.compute("smooth-grad", net, pixels, method=cv.Method("integrated-gradients", steps=3), **quick)
    as_text = cv.compute("smooth-grad", net, pixels, method="integrated-gradients --steps 3", **quick)
    old_way = cv.compute("smooth-grad", net, pixels, method="integrated-gradients", steps=3, **quick)
    torch.testing.assert_close(as_object.maps, as_text.maps, rtol=0, atol=0)
    torch.testing.assert_close(as_object.maps, old_way.maps, rtol=0, atol=0)
    assert as_object.facts["steps"] == old_way.facts["steps"] == 3
    assert old_way.facts["method"] == "integrated-gradients"
    assert as_text.facts["method"] == as_object.facts["method"] == "integrated-gradients --steps 3"


def test_the_metrics_score_methods_given_as_objects_one_setting_after_another():
    net, pixels = _net(), torch.rand(2, 3, 8, 8)
    quick = {"steps": 2, "road": False, "randomisation_stages": 0}
    methods = [cv.Method("saliency", method="guided"), "smooth-grad --samples 2 --method 'gradient-x-input'"]
    result = cv.compute("metrics", net, pixels, explain=methods, **quick)
    assert len(result) == 4  # two images, one method after the other
    labels = [result.row_facts[row]["method"] for row in range(4)]
    assert labels == ["Saliency maps (guided)"] * 2 + ["SmoothGrad (samples 2, gradient-x-input)"] * 2
    assert [result.row_facts[row]["explain"] for row in (0, 2)] == [
        "saliency --method guided",
        "smooth-grad --samples 2 --method 'gradient-x-input'",  # text as given
    ]
    alone = cv.compute("metrics", net, pixels, explain="saliency --method guided", **quick)
    torch.testing.assert_close(result.row_numbers["deletion_auc"][:2], alone.row_numbers["deletion_auc"])
    assert result.to_host().record(3)["method"] == labels[3]


def test_the_workflow_takes_smoothgrads_methods_as_text():
    config = _config("smooth-grad", methods=["vanilla", "integrated-gradients --steps 8"])
    assert check_config(config, check_model_names=False)["techniques"]["smooth_grad"]["methods"][1].endswith("8")


def test_the_model_check_finds_a_layer_named_inside_a_method():
    from cnnvis_tasks.workflow.model_check import questions

    config = check_config(
        _config("metrics", methods=["grad-cam --layer _blocks.15", "smooth-grad --method guided"]),
        check_model_names=False,
    )
    asked = questions(config)["efficientnet_lite0"]
    assert ("techniques.metrics.methods ('grad-cam --layer _blocks.15')", "layer", "_blocks.15") in asked
