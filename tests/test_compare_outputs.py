"""scripts/compare_outputs.py's CSV comparison: measures a later change added are left out
by name (--ignore-key), every other cell is still compared."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_outputs.py"
spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
compare_outputs = importlib.util.module_from_spec(spec)
sys.modules.setdefault("compare_outputs", compare_outputs)  # its dataclasses look their module up
spec.loader.exec_module(compare_outputs)


def test_a_csv_compares_without_the_columns_and_summary_rows_of_added_measures(tmp_path):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("model,method,deletion_auc\nm,Grad-CAM,0.25\n")
    new.write_text("model,method,deletion_auc,sparseness\nm,Grad-CAM,0.25,0.5\n")
    assert compare_outputs.compare_file(old, new, {"sparseness"}) == []
    assert compare_outputs.compare_file(old, new, set()) != []  # not ignored: a difference
    new.write_text("model,method,deletion_auc,sparseness\nm,Grad-CAM,0.26,0.5\n")
    assert "row 2 differs" in compare_outputs.compare_file(old, new, {"sparseness"})[0]
    old.write_text("model,method,metric,mean\nm,A,deletion_auc,0.25\nm,B,deletion_auc,0.5\n")
    new.write_text("model,method,metric,mean\nm,A,deletion_auc,0.25\nm,A,sparseness,0.7\nm,B,deletion_auc,0.5\n")
    assert compare_outputs.compare_file(old, new, {"sparseness"}) == []
    new.write_text("model,method,metric,mean\nm,A,deletion_auc,0.25\n")
    assert compare_outputs.compare_file(old, new, {"sparseness"}) == [
        "3 rows -> 2 rows (without the ignored columns and metrics)"
    ]


def test_close_files_are_equal_to_their_tolerance_and_no_further(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text('{"curve": [0.19156937301158905, 0.5], "label": "a", "on": true}')
    new.write_text('{"curve": [0.1915687918663025, 0.5], "label": "a", "on": true}')
    assert compare_outputs.compare_file(old, new, set()) != []  # exact by default
    assert compare_outputs.compare_file(old, new, set(), 1e-5) == []
    new.write_text('{"curve": [0.1916, 0.5], "label": "a", "on": true}')  # 3e-5 away
    assert compare_outputs.compare_file(old, new, set(), 1e-5) != []
    assert compare_outputs.compare_file(old, new, set(), 1e-4) == []
    new.write_text('{"curve": [0.19156937301158905, 0.5], "label": "b", "on": true}')
    assert compare_outputs.compare_file(old, new, set(), 1e-5) != []  # text stays exact
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("method,mean\nGrad-CAM,0.398986\n")
    new.write_text("method,mean\nGrad-CAM,0.3989861\n")
    assert compare_outputs.compare_file(old, new, set()) != []
    assert compare_outputs.compare_file(old, new, set(), 1e-5) == []
    new.write_text("method,mean\nGrad-CAM++,0.398986\n")
    assert compare_outputs.compare_file(old, new, set(), 1e-5) != []


def test_close_pictures_may_differ_in_a_few_pixels(tmp_path):
    import numpy as np
    from PIL import Image

    pixels = np.full((20, 20, 3), 100, dtype=np.uint8)  # 400 pixels: 1 % is 4
    Image.fromarray(pixels).save(tmp_path / "old.png")
    nudged = pixels.copy()
    nudged[2, 0:4] = 140  # a line drawn 4 pixels elsewhere
    Image.fromarray(nudged).save(tmp_path / "new.png")
    assert compare_outputs.compare_file(tmp_path / "old.png", tmp_path / "new.png", set()) != []
    assert compare_outputs.compare_file(tmp_path / "old.png", tmp_path / "new.png", set(), 1e-4) == []
    nudged[3, 0] = 101
    Image.fromarray(nudged).save(tmp_path / "new.png")
    found = compare_outputs.compare_file(tmp_path / "old.png", tmp_path / "new.png", set(), 1e-4)
    assert found == ["pixels differ: 5 pixels, max difference 40"]


def test_only_the_files_named_close_get_the_tolerance(tmp_path):
    for side, value in (("old", 0.25), ("new", 0.2500001)):
        for folder in ("metrics", "saliency"):
            (tmp_path / side / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / side / folder / "record.json").write_text(f'{{"value": {value}}}')
    report = compare_outputs.compare_trees(tmp_path / "old", tmp_path / "new", set(), close=["metrics/*"])
    assert (report.identical, report.differ) == (1, 1)
    assert report.lines[0].startswith("saliency/record.json")
