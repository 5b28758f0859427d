"""Drive a real headless Chromium from tests: the DevTools client of scripts/check_gallery.py
(:class:`ChromiumSession`), loaded by path, with what tests of the gallery's scripted pages
need on top: wait until a page says it has drawn (``document.body.dataset.ready == "1"``),
act on it and wait again.

    with Browser() as browser:
        browser.open(results / "images.html")
        browser.choose("#sort", "confidence")
        assert browser.errors(warnings=True) == []
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_checker():
    """scripts/check_gallery.py as a module (loaded once)."""
    name = "cnnvis_check_gallery"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "check_gallery.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


checker = load_checker()
find_browser = checker.find_browser
ChromiumSession = checker.ChromiumSession

READY = "Boolean(document.body) && document.body.dataset.ready === '1'"
NOT_READY = "document.body && (document.body.dataset.ready = '')"


class Browser(ChromiumSession):
    """A ChromiumSession whose actions wait for the page to draw again."""

    def open(self, page: str | Path, ready: bool = True, fresh: bool = False) -> None:
        """Go to ``page`` (a path or URL; a change of the fragment alone too) and, with
        ``ready``, wait until the page has drawn.  ``fresh``: in a new document even when
        only the fragment changes (nothing loaded before)."""
        if fresh:
            super().open("about:blank")
        self.evaluate(NOT_READY)  # a fragment change keeps the document: forget its last drawing
        super().open(page)
        if ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the page has drawn."""
        self.wait(READY, timeout)

    def act(self, javascript: str) -> None:
        """Run JavaScript that makes the page draw again, and wait for it."""
        self.evaluate(NOT_READY)
        self.evaluate(javascript)
        self.wait_ready()

    def choose(self, selector: str, value: str) -> None:
        """Choose ``value`` in a <select> and wait for the page to draw."""
        self.evaluate(NOT_READY)
        self.select(selector, value)
        self.wait_ready()

    def choose_and_load(self, selector: str, value: str) -> None:
        """Choose ``value`` in a <select> whose change loads another address (its state in the
        query string), and wait for that page to load and draw."""
        self.tools.events.clear()
        self.select(selector, value)
        self.tools.wait_for("Page.loadEventFired", self.timeout)
        self._mark = 0
        self.wait_ready()

    def press(self, selector: str) -> None:
        """Click an element and wait for the page to draw."""
        self.evaluate(NOT_READY)
        self.click(selector)
        self.wait_ready()

    def follow(self, selector: str) -> str:
        """Open the (absolute) address of the link ``selector`` matches, as a click would; that address."""
        href = self.evaluate(
            f"(() => {{ const link = document.querySelector({json.dumps(selector)});"
            f" if (!link || !link.href) throw new Error('no link at ' + {json.dumps(selector)});"
            " return link.href; })()"
        )
        self.open(href)
        return href

    def texts(self, selector: str) -> list[str]:
        """The text of every element ``selector`` matches."""
        return self.evaluate(
            f"Array.from(document.querySelectorAll({json.dumps(selector)}), node => node.textContent.trim())"
        )

    def attributes(self, selector: str, name: str) -> list[str | None]:
        """An attribute of every element ``selector`` matches."""
        return self.evaluate(
            f"Array.from(document.querySelectorAll({json.dumps(selector)}),"
            f" node => node.getAttribute({json.dumps(name)}))"
        )
