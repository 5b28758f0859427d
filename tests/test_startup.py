"""Start-up cost: what a fresh process imports.

Every workflow job is a new ``cnnvis-tasks`` process, and the Snakefile imports
parts of the package whenever it is read: torch (seconds), torchvision (seconds
more) and matplotlib (half a second) must be imported only where needed.
"""

import json
import subprocess
import sys

import pytest
from conftest import CAT, REPO

HEAVY = ("torch", "torchvision", "matplotlib")


def imported_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint('IMPORTED', *[m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.splitlines()[-1].split()[1:])


def command_imports(*args: str) -> set[str]:
    """HEAVY modules imported by ``cnnvis-tasks ARGS`` (which must succeed)."""
    return imported_after(
        "import sys\nfrom cnnvis_tasks.cli import main\n"
        f"sys.argv = ['cnnvis-tasks', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code"
    )


# Modules the Snakefile imports when the workflow is read, and what they rest on.
@pytest.mark.parametrize(
    "module",
    [
        "cnnvis_tasks",
        "cnnvis_tasks.models.names",
        "cnnvis_tasks.io.image_list",
        "cnnvis_tasks.io.images",
        "cnnvis_tasks.errors",
        "cnnvis_tasks.cli",
        "cnnvis_tasks.cli.dataset",
        "cnnvis_tasks.cli.gallery",
        "cnnvis_tasks.workflow",
        "cnnvis_tasks.run.runner",
        "cnnvis_tasks.api",
    ],
)
def test_workflow_modules_import_no_torch(module):
    assert imported_after(f"import {module}") == set()


def test_every_technique_description_and_the_whole_schema_load_without_torch():
    """Technique modules import torch only when they compute: the workflow and the command
    list read every description at each start."""
    assert (
        imported_after(
            "from cnnvis_tasks.techniques import all_techniques\n"
            "from cnnvis_tasks.workflow.config import full_schema\n"
            "from cnnvis_tasks.cli.techniques import make_command\n"
            "assert len(all_techniques()) >= 8 and full_schema()\n"
            "[make_command(t) for t in all_techniques()]"
        )
        == set()
    )


def test_embedded_model_name_is_checked_without_torchvision():
    assert (
        imported_after(
            "from cnnvis_tasks.models.names import DEFAULT_COLORMAP, EMBEDDED_MODEL, colormap_problem, "
            "model_name_problem\n"
            "assert model_name_problem(EMBEDDED_MODEL) is None and colormap_problem(DEFAULT_COLORMAP) is None"
        )
        == set()
    )


def test_names_answer_for_torchvision_models_and_colormaps():
    from cnnvis_tasks.models.names import colormap_names, colormap_problem, known_models, model_name_problem

    assert model_name_problem("vgg16") is None and "vgg16" in known_models()
    assert "did you mean resnet50" in model_name_problem("resnet5O")
    assert colormap_problem("viridis") is None and "viridis" in colormap_names()
    assert colormap_problem("nope") == "unknown colormap 'nope' (e.g. jet, viridis, inferno, turbo)"


def test_version_help_check_images_and_gallery_import_no_torch(tmp_path):
    assert command_imports("--version") == set()
    assert command_imports("--help") == set()
    status = tmp_path / "images.json"
    assert command_imports("check-images", "--image", str(CAT), "--out", str(status), "-q") == set()
    assert json.loads(status.read_text())["images"][0]["status"] == "ok"
    out = tmp_path / "gallery" / "index.html"
    assert command_imports("gallery", "--spec", '{"tables": []}', "--images", str(status), "--out", str(out)) == set()
    assert out.is_file()


def test_saliency_on_the_embedded_model_imports_neither_torchvision_nor_matplotlib(tmp_path):
    out = tmp_path / "saliency.png"
    imported = command_imports(
        "saliency", "--image", str(CAT), "--out-gray", str(out), "--device", "cpu", "--threads", "1", "-q"
    )
    assert imported == {"torch"} and out.is_file()
