"""The folder-batch bookkeeping of the headless runner (runner/batch.py), without ComfyUI: which files make items and
in which order, output folder names, the manifest's resume rule (an interrupted line is ignored, an item is done only
when its last line says ok and its files exist), names that never overwrite, and the --batch-input syntax."""
import json
import os
import subprocess
import sys

import pytest

from vcut.runner.batch import BatchInput, Item, Manifest, Result, batch_targets, list_items
from vcut.runner.common import RunnerError, clean_stale, free_path, inside, owned_name


def test_items_are_the_folders_files_in_sorted_order(tmp_path):
    for name in ("b.png", "a.mp4", "a.png", "c.jpg", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    items = list_items(tmp_path)
    assert [i.path.name for i in items] == ["a.mp4", "a.png", "b.png", "c.jpg"]
    assert [i.name for i in items] == ["a.mp4", "a.png", "b", "c"]  # a shared stem: the whole name
    assert [i.index for i in items] == [1, 2, 3, 4]


def test_manifest_resume_rule(tmp_path):
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "x.png").write_bytes(b"x")
    a, b, c = (Item(tmp_path / f"{n}.png", n, i) for i, n in enumerate("abc", 1))
    manifest = Manifest(out / "manifest.jsonl")
    manifest.append(Result(a, "ok", [str(out / "a" / "x.png")], 1.0))
    manifest.append(Result(b, "ok", [str(out / "b" / "gone.png")], 1.0))  # its file was deleted since
    manifest.append(Result(c, "ok", [], 1.0))
    manifest.append(Result(c, "failed", [], 0.5, "boom"))  # the last line counts
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"input": "' + str(tmp_path / "d.png"))  # cut short by an interruption
    again = Manifest(out / "manifest.jsonl")
    assert again.finished(a)["outputs"] == [str(out / "a" / "x.png")]
    assert again.finished(b) is None and again.finished(c) is None
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()[:4]]
    assert lines[3] == {"input": str(c.path), "outputs": [], "seconds": 0.5, "status": "failed", "error": "boom",
                        "server": None}


def test_free_path_never_overwrites(tmp_path):
    target = tmp_path / "v_00001_.mp4"
    assert free_path(target) == target
    target.write_bytes(b"someone's")
    (tmp_path / "v_00001_-2.mp4").write_bytes(b"x")
    assert free_path(target) == tmp_path / "v_00001_-3.mp4"


class Loader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("COMBO", {"options": ["a.png"]}), "strength": ("FLOAT", {})}}


def test_batch_input_syntax_and_targets(tmp_path):
    assert BatchInput.parse(f"Load.image={tmp_path}") == BatchInput("Load", "image", tmp_path.resolve())
    for bad in ("image=x", "Load.image", ".image=x"):
        with pytest.raises(RunnerError, match="NODE.INPUT=FOLDER"):
            BatchInput.parse(bad)
    with pytest.raises(RunnerError, match="is not a folder"):
        BatchInput.parse(f"Load.image={tmp_path / 'missing'}")
    prompt = {"1": {"class_type": "Load", "inputs": {"image": "a.png"}, "_meta": {"title": "First"}},
              "2": {"class_type": "Load", "inputs": {"image": "a.png"}, "_meta": {"title": "Second"}}}
    classes = {"Load": Loader}
    assert batch_targets(prompt, BatchInput("Load", "image", tmp_path), classes) == ["1", "2"]
    assert batch_targets(prompt, BatchInput("Second", "image", tmp_path), classes) == ["2"]
    assert batch_targets(prompt, BatchInput("1", "image", tmp_path), classes) == ["1"]
    with pytest.raises(RunnerError, match="'strength' is a FLOAT input, not a file name"):
        batch_targets(prompt, BatchInput("Load", "strength", tmp_path), classes)
    with pytest.raises(RunnerError, match="no node with id, title or type 'LoadVideo'"):
        batch_targets(prompt, BatchInput("LoadVideo", "file", tmp_path), classes)


def test_paths_a_server_names_stay_inside_the_item_folder(tmp_path):
    item = tmp_path / "out" / "a"
    item.mkdir(parents=True)
    assert inside(item, "", "v_00001_.mp4") == item / "v_00001_.mp4"
    assert inside(item, "video/./x", "v.mp4") == item / "video" / "x" / "v.mp4"
    assert inside(item, "sub\nline", "a\nb.png") == item / "sub_line" / "a_b.png"  # control characters: "_"
    for subfolder, filename, why in [("../../escape", "x.pth", "'..'"), ("/etc", "x", "absolute subfolder"),
                                     ("", "/root/.ssh/authorized_keys", "not a plain name"),
                                     ("ok", "../x", "not a plain name"), ("a\\..\\..", "x", "'..'"),
                                     ("C:/Windows", "x", "absolute subfolder"), ("", "..", "not a plain name"),
                                     (None, "x", "not a pair of names")]:
        with pytest.raises(ValueError, match=why):
            inside(item, subfolder, filename)
    (item / "link").symlink_to(tmp_path, target_is_directory=True)  # a link inside the folder that leads out
    with pytest.raises(ValueError, match="outside"):
        inside(item, "link", "x.png")


def test_a_file_name_with_a_newline_makes_one_output_folder_name(tmp_path):
    (tmp_path / "two\nlines.png").write_bytes(b"x")
    (item,) = list_items(tmp_path)
    assert item.name == "two_lines" and item.label == "two_lines.png" and item.path.name == "two\nlines.png"


def test_stale_folders_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(dead.stdout)
    (tmp_path / f".vcut-batch-{gone}-0123abcd").mkdir()
    (tmp_path / f".vcut-batch-{gone}-0123abcd" / "half.png").write_bytes(b"x")
    (tmp_path / f".vcut-batch-{gone}-link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    mine = tmp_path / owned_name(".vcut-batch-")
    mine.mkdir()
    unowned = tmp_path / ".vcut-batch-0123abcd"  # no owner in the name: never guessed
    unowned.mkdir()
    clean_stale(tmp_path, ".vcut-batch-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, unowned.name])
    assert mine.name.startswith(f".vcut-batch-{os.getpid()}-")


def test_a_manifest_that_is_a_folder_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(RunnerError, match="--manifest .* is a folder"):
        Manifest(tmp_path / "m")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunnerError, match="cannot write the manifest"):
        Manifest(tmp_path / "file" / "manifest.jsonl")


def test_runner_modules_import_one_way():
    """No module of runner/ imports another that imports it back, directly or through others (cli -> local /
    remote -> batch -> common -> convert)."""
    import ast
    import pathlib

    folder = pathlib.Path(__file__).resolve().parents[2] / "runner"
    imports = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names.update([node.module] if node.module else [a.name for a in node.names])
        imports[path.stem] = names & {p.stem for p in folder.glob("*.py")}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in imports.get(start, ()))
    circles = sorted(m for m in imports if reaches(m, m))
    assert not circles, f"runner modules in an import circle: {circles} ({imports})"
