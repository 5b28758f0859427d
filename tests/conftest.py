"""Shared fixtures.  Tests never use the network: downloads are switched off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["CNNVIS_OFFLINE"] = "1"
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
CAT = IMAGES / "chelsea.png"


@pytest.fixture(autouse=True)
def _private_torch_home(tmp_path_factory, monkeypatch):
    """Each test sees an empty torch hub cache of its own."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True, scope="session")
def _private_cnnvis_cache(tmp_path_factory):
    """The tests' remembered automatic layers stay out of the user's cache."""
    os.environ["CNNVIS_CACHE"] = str(tmp_path_factory.mktemp("cnnvis_cache"))


@pytest.fixture(scope="session")
def embedded_model():
    from cnnvis_tasks.models.loading import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the gallery's scripted pages (tests/browser.py); skipped without one."""
    from browser import Browser, find_browser

    if find_browser() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); these checks need a real browser")
    with Browser(timeout=30, width=1280, height=1000) as session:
        yield session
