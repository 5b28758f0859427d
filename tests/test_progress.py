import io
import re
import sys
import types

import click._termui_impl

from cnnvis_tasks.run.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def fake_clock(monkeypatch, times):
    """Our clock and click's (its ETA) read the seconds in ``times`` in turn; click's then stays at the last."""
    monkeypatch.setattr("cnnvis_tasks.run.progress.time.monotonic", iter(times).__next__)
    theirs = iter(times)
    monkeypatch.setattr(click._termui_impl, "time", types.SimpleNamespace(time=lambda: next(theirs, times[-1])))


def test_log_lines_are_sparse_and_status_is_computed_only_when_printed(capsys, monkeypatch):
    fake_clock(monkeypatch, [0.0, 1.0, 2.0, 11.0, 12.0, 13.0])
    progress = Progress(4, "job", log_every=10.0)
    assert not progress.interactive
    computed = []

    def status(step):
        return lambda: computed.append(step) or f"at {step}"

    for step in range(1, 5):
        progress.update(step, status(step))
    progress.update(4, status(5))  # after the end: nothing more
    lines = capsys.readouterr().err.strip().splitlines()
    assert computed == [3, 4]  # steps 1 and 2 fell inside the 10 s interval
    assert lines == [
        "job [##################------] 3/4 11s eta 4s at 3",
        "job [########################] 4/4 12s at 4",
    ]


def test_fractional_progress_is_drawn_in_proportion_and_counted_in_whole_units(capsys, monkeypatch):
    fake_clock(monkeypatch, [0.0, 20.0])
    progress = Progress(4, "class-viz", log_every=10.0)
    progress.update(2.5, "objective 3.5")
    assert progress.done == 2.5
    line = capsys.readouterr().err.strip()
    assert line == "class-viz [###############---------] 2/4 20s eta 12s objective 3.5"


def test_finish_writes_an_update_that_the_interval_held_back(capsys, monkeypatch):
    fake_clock(monkeypatch, [0.0, 1.0, 2.0, 3.0])
    with Progress(10, "job") as progress:
        progress.update(0.5, lambda: "first")
        progress.update(1.5, lambda: "second")
    assert capsys.readouterr().err.strip().splitlines() == ["job [###---------------------] 1/10 3s eta 17s second"]


def test_a_terminal_gets_a_click_bar_with_eta_and_whole_counts(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fake_clock(monkeypatch, [0.0, 0.1, 1.0, 2.0, 3.0, 4.0])
    progress = Progress(4, "class-viz")
    assert progress.interactive
    computed = []
    progress.update(0.5, lambda: computed.append(0.5) or "objective 1")  # within 0.2 s: not drawn
    progress.update(1.5, lambda: computed.append(1.5) or "objective 2")
    progress.update(2.5, lambda: computed.append(2.5) or "objective 3")
    progress.update(4, lambda: computed.append(4) or "objective 4")
    assert computed == [1.5, 2.5, 4]
    frames = terminal.getvalue().split("\r")
    assert re.search(r"class-viz  \[#{13}-{23}\]  .*1/4 objective 2", frames[1]), frames
    assert re.search(r"\[#{22}-{14}\]  \d\d:\d\d:\d\d  2/4 objective 3", frames[2]), frames  # with an ETA
    assert re.search(r"\[#{36}\]  4/4 objective 4", frames[3]), frames
    assert terminal.getvalue().endswith("\n") and "2.5" not in terminal.getvalue()


def test_quiet_prints_nothing(capsys):
    progress = Progress(2, "job", quiet=True)
    progress.update(1, lambda: 1 / 0)
    progress.update(2, lambda: 1 / 0)
    progress.finish()
    assert capsys.readouterr().err == ""
