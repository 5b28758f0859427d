"""Class lists a user gives for their own model: files, inline lists, the image folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnvis_tasks.errors import CnnvisError
from cnnvis_tasks.models.class_lists import class_list_problem, folder_classes, read_class_list

FLOWERS = ["daisy", "dandelion", "rose", "sunflower", "tulip"]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(source, **options) -> str:
    with pytest.raises(CnnvisError) as caught:
        read_class_list(source, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_no_torch_is_imported():
    code = "import sys, cnnvis_tasks.models.class_lists; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flowers.txt", "daisy\ndandelion\nrose\nsunflower\ntulip\n"),
        ("trailing.txt", "\ufeffdaisy\r\n dandelion \r\nrose\r\nsunflower\r\ntulip\r\n\r\n\n"),
        ("indexed.csv", "0,daisy\n1,dandelion\n2,rose\n3,sunflower\n4,tulip\n"),
        ("header.csv", "index,name\n3,sunflower\n0,daisy\n4,tulip\n1,dandelion\n2,rose\n"),
        ("swapped.csv", "class,id\ndaisy,0\ndandelion,1\nrose,2\nsunflower,3\ntulip,4\n"),
        ("label.csv", "idx,label\n0,daisy\n1,dandelion\n2,rose\n3,sunflower\n4,tulip\n"),
        ("single.csv", "daisy\ndandelion\nrose\nsunflower\ntulip\n"),
        ("single_header.csv", "class\ndaisy\ndandelion\nrose\nsunflower\ntulip\n\n"),
        ("quoted.csv", '0,"daisy"\n1,dandelion\n2,rose\n3,sunflower\n4,tulip\n'),
        ("list.json", json.dumps(FLOWERS)),
        ("by_index.json", json.dumps({"4": "tulip", "0": "daisy", "1": "dandelion", "2": "rose", "3": "sunflower"})),
        ("by_name.json", json.dumps({"tulip": 4, "daisy": 0, "dandelion": 1, "rose": 2, "sunflower": 3})),
        (
            "hf_config.json",
            json.dumps({"architectures": ["X"], "id2label": {str(i): n for i, n in enumerate(FLOWERS)}}),
        ),
        ("list.yaml", "- daisy\n- dandelion\n- rose\n- sunflower\n- tulip\n"),
        ("by_index.yml", "4: tulip\n0: daisy\n1: dandelion\n2: rose\n3: sunflower\n"),
        ("by_name.yaml", "daisy: 0\ndandelion: 1\nrose: 2\nsunflower: 3\ntulip: 4\n"),
        ("nested.yaml", "classes:\n  - daisy\n  - dandelion\n  - rose\n  - sunflower\n  - tulip\n"),
    ],
)
def test_each_file_form(tmp_path, name, text):
    write(tmp_path, name, text)
    assert read_class_list(name, base_dir=tmp_path) == FLOWERS


def test_names_that_are_numbers_and_names_with_commas(tmp_path):
    assert read_class_list(write(tmp_path, "digits.yaml", "[0, 1, 2]")) == ["0", "1", "2"]
    assert read_class_list(write(tmp_path, "digits.csv", "0,7\n1,3\n")) == ["7", "3"]
    assert read_class_list(write(tmp_path, "commas.csv", '0,"tench, Tinca tinca"\n1,goldfish\n')) == [
        "tench, Tinca tinca",
        "goldfish",
    ]


def test_an_inline_list():
    assert read_class_list(["cat", "dog"]) == ["cat", "dog"]
    assert read_class_list(("cat", "dog")) == ["cat", "dog"]
    assert "inline class list is empty" in error_of([])
    assert "item 3: class 'cat' is named twice (also at item 1)" in error_of(["cat", "dog", "cat"])
    assert "item 2: False is not a class name; quote it" in error_of(["yes", False])


def test_the_class_folders_in_image_folders_order(tmp_path):
    for name in ("apple", "Zebra", "banana", ".hidden"):
        (tmp_path / "train" / name).mkdir(parents=True)
    (tmp_path / "train" / "README.txt").write_text("not a class")
    expected = [".hidden", "Zebra", "apple", "banana"]  # code-point order: upper case first, as ImageFolder
    assert folder_classes(tmp_path / "train") == expected
    assert read_class_list({"from": "folders"}, folder_root=tmp_path / "train") == expected
    from torchvision.datasets.folder import find_classes

    assert find_classes(str(tmp_path / "train"))[0] == expected


def test_the_class_folders_from_the_images_labels():
    labels = ["tulip", "Rose", "tulip", "daisy"]
    assert read_class_list({"from": "folders"}, folder_labels=labels) == ["Rose", "daisy", "tulip"]


def test_class_folder_errors(tmp_path):
    assert "no image folders" in error_of({"from": "folders"})
    assert "in no class folders" in error_of({"from": "folders"}, folder_labels=[])
    (tmp_path / "empty").mkdir()
    message = error_of({"from": "folders"}, folder_root=tmp_path / "empty")
    assert "has no class folders" in message and str(tmp_path / "empty") in message
    assert "image folder not found" in error_of({"from": "folders"}, folder_root=tmp_path / "nowhere")
    assert "is a file" in error_of({"from": "folders"}, folder_root=write(tmp_path, "f.txt", "x"))
    assert "not understood" in error_of({"from": "files"})


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("gap.txt", "daisy\n\nrose\n", "gap.txt line 2: blank line"),
        ("dup.txt", "daisy\nrose\ndaisy\n", "dup.txt line 3: class 'daisy' is named twice (also at line 1)"),
        ("empty.txt", "\n\n", "empty.txt is empty"),
        ("gap.csv", "index,name\n0,daisy\n2,rose\n", "gap.csv line 3: index 2, but there are 2 classes"),
        ("dup_index.csv", "0,daisy\n1,rose\n1,tulip\n", "line 3: index 1 given twice ('rose' at line 2, 'tulip' here)"),
        ("dup_name.csv", "0,daisy\n1,rose\n2,daisy\n", "dup_name.csv line 3: class 'daisy' is named twice"),
        ("blank.csv", "0,daisy\n\n1,rose\n", "blank.csv line 2: blank line"),
        ("wide.csv", "0,daisy,x\n1,rose,y\n", "wide.csv line 1: 3 columns"),
        ("ragged.csv", "0,daisy\nrose\n", "ragged.csv line 2: 1 column, but line 1 has 2"),
        ("words.csv", "daisy,rose\ntulip,lily\n", "neither column holds whole numbers"),
        ("typo.csv", "x,daisy\n1,rose\n", "typo.csv line 1: index 'x' is not a whole number"),
        ("only_header.csv", "index,name\n", "has a header but no class names"),
        ("no_name.csv", "0,daisy\n1,\n", "no_name.csv line 2: empty class name"),
        ("gap.json", '{"0": "daisy", "2": "rose"}', "gap.json entry '2': index 2, but there are 2 classes"),
        ("dup.json", '["daisy", "rose", "daisy"]', "dup.json item 3: class 'daisy' is named twice"),
        ("dup_index.json", '{"daisy": 0, "rose": 0}', "dup_index.json entry 'rose': index 0 given twice"),
        ("mixed.json", '{"daisy": "rose"}', "neither its keys nor its values are all whole numbers"),
        ("bad.json", '["daisy",\n "rose"', "bad.json line 2: not valid JSON"),
        ("scalar.json", '"daisy"', "holds a str"),
        ("bool.yaml", "- yes\n- no\n", "bool.yaml item 1: True is not a class name; quote it"),
        ("null.yaml", "- daisy\n-\n", "null.yaml item 2: None is not a class name"),
        ("empty.yaml", "", "holds nothing"),
        ("bad.yaml", "- daisy\n- [rose\n", "bad.yaml line 3: not valid YAML"),
        ("names.xml", "<classes/>", "unknown kind of file"),
    ],
)
def test_each_error_names_the_file_and_place(tmp_path, name, text, says):
    message = error_of(write(tmp_path, name, text))
    assert says in message
    assert str(tmp_path / name) in message


def test_a_file_that_is_not_there_or_not_text(tmp_path):
    assert "class list not found" in error_of("nowhere.txt", base_dir=tmp_path)
    assert str(tmp_path / "nowhere.txt") in error_of("nowhere.txt", base_dir=tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in error_of(tmp_path / "latin1.txt")
    (tmp_path / "folder.txt").mkdir()
    assert "is a folder" in error_of(tmp_path / "folder.txt")
    assert "is a folder" in error_of(tmp_path)


def test_class_list_problem():
    assert class_list_problem(FLOWERS, 5, "models.flowers.classes") is None
    assert class_list_problem(FLOWERS[:4], 5, "models.flowers.classes", source="flowers.txt") == (
        "config error: models.flowers.classes: 4 class names (flowers.txt) but the model's head has 5 outputs; "
        "give one name per output, in the order of the head's outputs"
    )
    assert class_list_problem(["cat"], 2, "models.x.classes").startswith(
        "config error: models.x.classes: 1 class name but the model's head has 2 outputs;"
    )
