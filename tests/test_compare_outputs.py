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
