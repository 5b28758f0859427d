from cnnvis_tasks.progress import Progress


def test_log_lines_are_sparse_and_status_is_computed_only_when_printed(capsys, monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 11.0, 12.0, 13.0])
    monkeypatch.setattr("cnnvis_tasks.progress.time.monotonic", lambda: next(clock))
    progress = Progress(4, "job", log_every=10.0)
    computed = []

    def status(step):
        return lambda: computed.append(step) or f"at {step}"

    for step in range(1, 5):
        progress.update(step, status(step))
    lines = capsys.readouterr().err.strip().splitlines()
    assert computed == [3, 4]  # steps 1 and 2 fell inside the 10 s interval
    assert lines[0].startswith("job [") and "3/4" in lines[0] and "at 3" in lines[0]
    assert "4/4" in lines[1] and "at 4" in lines[1]


def test_quiet_prints_nothing(capsys):
    progress = Progress(2, "job", quiet=True)
    progress.update(1, lambda: 1 / 0)
    progress.update(2, lambda: 1 / 0)
    assert capsys.readouterr().err == ""
