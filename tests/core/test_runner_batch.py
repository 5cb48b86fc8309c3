"""The folder-batch bookkeeping of the headless runner (runner/batch.py), without ComfyUI: which files make items and
in which order, output folder names, the manifest's resume rule (an interrupted line is ignored, an item is done only
when its last line says ok and its files, as many as its run reported, exist), names that never overwrite, the
--batch-input syntax, and the leases and claims that let runs share an output folder (runner/common.py's Lease)."""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vcut.runner.batch import CLAIMS, MANIFEST, BatchInput, Item, Manifest, Result, batch_targets, list_items, plan
from vcut.runner.common import (
    LEASE_FILE,
    Lease,
    LeaseLost,
    RunnerError,
    clean_stale,
    free_path,
    inside,
    move_new,
    namespace,
)


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
    assert lines[3] == {"input": str(c.path), "outputs": [], "reported": 0, "seconds": 0.5, "status": "failed",
                        "error": "boom", "server": None, "run": None}


def test_an_ok_item_missing_reported_files_is_run_again(tmp_path):
    (tmp_path / "x.png").write_bytes(b"x")
    items = {n: Item(tmp_path / f"{n}.png", n, i) for i, n in enumerate("abcde", 1)}
    manifest = Manifest(tmp_path / MANIFEST)
    manifest.append(Result(items["a"], "ok", [str(tmp_path / "x.png")], reported=2))  # one of two files recorded
    manifest.append(Result(items["b"], "ok", [], reported=0))  # a workflow that writes nothing: done
    manifest.append(Result(items["c"], "ok", [str(tmp_path / "x.png")], reported=1))
    with open(tmp_path / MANIFEST, "a") as f:  # a line of an older runner: no count, no files
        f.write(json.dumps({"input": str(items["d"].path), "outputs": [], "status": "ok"}) + "\n")
        f.write(json.dumps({"input": str(items["e"].path), "outputs": [str(tmp_path / "x.png")], "status": "ok"})
                + "\n")
    again = Manifest(tmp_path / MANIFEST)
    assert [n for n, item in items.items() if again.finished(item)] == ["b", "c", "e"]


def test_manifest_reads_the_lines_other_runs_append(tmp_path):
    a, b = Item(tmp_path / "a.png", "a", 1), Item(tmp_path / "b.png", "b", 2)
    mine, theirs = Manifest(tmp_path / MANIFEST, "run-1"), Manifest(tmp_path / MANIFEST, "run-2")
    theirs.append(Result(a, "failed", [], error="boom"))
    mine.append(Result(b, "failed", [], error="mine"))
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"input": "half a line')  # being written: left for the next read
    mine.read()
    assert set(mine.others) == {str(a.path)} and mine.done[str(b.path)]["run"] == "run-1"
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('", "status": "ok", "outputs": []}\n')
    mine.read()
    assert "half a line" in mine.others


def test_free_path_never_overwrites(tmp_path):
    target = tmp_path / "v_00001_.mp4"
    assert free_path(target) == target
    target.write_bytes(b"someone's")
    (tmp_path / "v_00001_-2.mp4").write_bytes(b"x")
    assert free_path(target) == tmp_path / "v_00001_-3.mp4"
    source = tmp_path / "staged.mp4"
    source.write_bytes(b"ours")
    assert move_new(source, target) == tmp_path / "v_00001_-3.mp4" and not source.exists()
    assert target.read_bytes() == b"someone's" and (tmp_path / "v_00001_-3.mp4").read_bytes() == b"ours"


def test_listing_is_linear_and_names_shared_stems_by_the_whole_name(tmp_path):
    """60,000 files, every tenth stem shared by a .png and a .jpg; the seconds are printed (a figure, not asserted)."""
    for i in range(54_000):
        open(tmp_path / f"f{i:05d}.png", "w").close()
    for i in range(0, 54_000, 9):
        open(tmp_path / f"f{i:05d}.jpg", "w").close()
    began = time.perf_counter()
    items = list_items(tmp_path, frozenset({"f00001"}))
    print(f"list_items: {len(items)} files in {time.perf_counter() - began:.2f} s")
    assert len(items) == 60_000 and [i.index for i in items] == list(range(1, 60_001))
    assert [i.path.name for i in items] == sorted(i.path.name for i in items)
    names = {i.path.name: i.name for i in items}
    assert names["f00000.png"] == "f00000.png" and names["f00000.jpg"] == "f00000.jpg"  # a shared stem
    assert names["f00001.png"] == "f00001.png"  # a reserved stem (the manifest's name)
    assert names["f00002.png"] == "f00002"
    assert len(set(names.values())) == 60_000


def test_names_comfyui_would_read_as_annotated_paths_are_handed_on_plainly(tmp_path):
    names = {"x.png [output]": "x.png (output)", "y.png[input]": "y.png(input)", "z [temp]": "z (temp)",
             "a [output] b.png": "a [output] b.png", "tab\there.png": "tab_here.png"}
    for name, handed in names.items():
        assert Item(tmp_path / name, "x").input_name == handed


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


def dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def owned(folder, name, where, pid, age=0.0):
    """A folder as a run leaves it: its lease file inside, last renewed `age` seconds ago."""
    (folder / name).mkdir()
    lease = folder / name / LEASE_FILE
    lease.write_text(json.dumps({"run": name, "host": "h", "where": where, "pid": pid}))
    os.utime(lease, (time.time() - age,) * 2)
    return folder / name


def test_stale_folders_are_those_whose_lease_expired_or_whose_process_here_is_gone(tmp_path):
    gone = dead_pid()
    killed_here = owned(tmp_path, f".vcut-batch-{gone}-aa", namespace(), gone)
    (killed_here / "half.png").write_bytes(b"x")
    # another machine or container: its pids mean nothing here, only its lease counts
    elsewhere_live = owned(tmp_path, f".vcut-batch-{gone}-bb", "other-host/boot/1", gone, age=60)
    elsewhere_dead = owned(tmp_path, f".vcut-batch-{gone}-cc", "other-host/boot/1", gone, age=200)
    reused = owned(tmp_path, f".vcut-batch-{os.getpid()}-dd", namespace(), os.getpid(), age=200)  # not renewed
    no_lease_new = tmp_path / ".vcut-batch-ee"
    no_lease_new.mkdir()  # being made this moment, or by an older runner: its own age counts
    no_lease_old = tmp_path / ".vcut-batch-ff"
    no_lease_old.mkdir()
    os.utime(no_lease_old, (time.time() - 200,) * 2)
    with Lease() as lease:
        mine = lease.folder(tmp_path, ".vcut-batch-")
        clean_stale(tmp_path, ".vcut-batch-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (elsewhere_live, no_lease_new, mine))
    assert not any(p.exists() for p in (killed_here, elsewhere_dead, reused, no_lease_old))


def test_a_claim_is_held_by_one_run_renewed_and_taken_over_only_when_stale(tmp_path):
    claim = tmp_path / "a.claim"
    with Lease(lease_s=30, heartbeat_s=0.05) as first, Lease(lease_s=30, heartbeat_s=0.05) as second:
        assert first.claim(claim, item="a") and not second.claim(claim)
        assert json.loads(claim.read_text())["run"] == first.run and "pid" in second.owner(claim)
        os.utime(claim, (time.time() - 20,) * 2)
        deadline = time.monotonic() + 30
        while time.time() - claim.stat().st_mtime > 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time.time() - claim.stat().st_mtime < 10  # renewed by the heartbeat
        first.check(claim)
        first.release(claim)
        assert not claim.exists() and second.claim(claim)
        first.stopped.set()  # the first run stalls: its other claim is no longer renewed
        first.thread.join()
        other = tmp_path / "b.claim"
        first._write(other)
        os.utime(other, (time.time() - 31,) * 2)
        assert second.claim(other)  # expired: taken over
        first.renew()
        with pytest.raises(LeaseLost, match="b.claim expired or was taken over"):
            first.check(other)
        second.check(other)


def test_a_claim_of_a_killed_run_here_is_taken_at_once(tmp_path):
    claim = tmp_path / "a.claim"
    claim.write_text(json.dumps({"run": "r", "where": namespace(), "pid": dead_pid()}))
    with Lease() as lease:
        assert lease.claim(claim)
    claim.write_text(json.dumps({"run": "r", "where": "another/container/7", "pid": dead_pid()}))
    with Lease() as lease:
        assert not lease.claim(claim)  # a fresh lease of another PID namespace: its pid is not ours to check


def batch_options(folder, manifest=None):
    return argparse.Namespace(batch_input=f"Load.image={folder}", manifest=manifest)


PROMPT = {"1": {"class_type": "Load", "inputs": {"image": "a.png"}}}


def test_batch_naming_traps_are_refused_or_named_apart(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    out.mkdir()
    for name in ("a.png", "manifest.jsonl.png", "b.png"):
        (photos / name).write_bytes(b"x")
    with Lease() as lease:
        with pytest.raises(RunnerError, match=r"--output-dir: the manifest .*photos/manifest.jsonl would lie in the "
                                              r"--batch-input folder .* --output-dir .*photos-out") as refused:
            plan(batch_options(photos), photos, PROMPT, {"Load": Loader}, lease)
        assert refused.value.code == 2 and not (photos / MANIFEST).exists()
        with pytest.raises(RunnerError, match="--manifest: the manifest"):
            plan(batch_options(photos, str(photos / "m.jsonl")), out, PROMPT, {"Load": Loader}, lease)
        batch = plan(batch_options(photos), out, PROMPT, {"Load": Loader}, lease)
        assert [i.name for i in batch.items] == ["a", "b", "manifest.jsonl.png"]  # not the manifest's own name
        (out / "b").write_text("the user's file")
        with pytest.raises(RunnerError, match=r"--output-dir: .*out/b is a file, but the outputs of .*b.png go into "
                                              "a folder of that name") as refused:
            plan(batch_options(photos), out, PROMPT, {"Load": Loader}, lease)
        assert refused.value.code == 2


def share(out, photos, results, lease_s=120.0):
    """One run's pass over the batch, as local.py makes it: claim, 'run' (a file per item), commit."""
    with Lease(lease_s=lease_s) as lease:
        batch = plan(batch_options(photos), out, PROMPT, {"Load": Loader}, lease)
        results.extend((lease.run, r) for r in batch.skipped)
        for item in batch.items:
            if any(r.item.index == item.index for r in batch.skipped):
                continue
            result = batch.start(item)
            if result is None:
                time.sleep(0.01)
                (out / item.name).mkdir(exist_ok=True)
                written = out / item.name / f"{lease.run}.png"
                written.write_text(lease.run)
                result = batch.commit(Result(item, "ok", [str(written)], reported=1))
            results.append((lease.run, result))


def test_two_runs_sharing_an_output_folder_run_every_item_once(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for i in range(40):
        (photos / f"p{i:02d}.png").write_bytes(b"x")
    results = []
    runs = [threading.Thread(target=share, args=(out, photos, results)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert sorted(os.path.basename(r["input"]) for r in records) == sorted(p.name for p in photos.iterdir())
    assert all(r["status"] == "ok" and os.path.isfile(r["outputs"][0]) for r in records)
    assert sorted(r.status for _, r in results).count("ok") == 40 and len(results) == 80
    assert not any((out / CLAIMS).iterdir())  # every claim given up


NAMESPACE_RUN = textwrap.dedent("""
    import json, pathlib, sys
    sys.path[:0] = [sys.argv[1], str(pathlib.Path(sys.argv[1]).parents[1] / "bench")]
    import pack_import
    pack_import.register_pack()
    import test_runner_batch as t
    results = []
    t.share(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), results)
    print(json.dumps([r.status for _, r in results]))
""")


def test_two_runs_in_two_pid_namespaces_share_an_output_folder(tmp_path):
    """Each run in a PID namespace of its own (both may be pid 1 there): neither can see the other's pid, so only
    the leases keep them apart."""
    if os.geteuid() != 0:
        pytest.fail("needs root for unshare --pid (CI runs as root)")
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for i in range(40):
        (photos / f"p{i:02d}.png").write_bytes(b"x")
    here = pathlib.Path(__file__).resolve().parent
    runs = [subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", NAMESPACE_RUN,
                              str(here), str(out), str(photos)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outcomes = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), outcomes
    leases = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert len({r["run"] for r in leases}) <= 2 and all(r["run"].startswith("1-") for r in leases)  # pid 1 in each
    assert sorted(os.path.basename(r["input"]) for r in leases) == sorted(p.name for p in photos.iterdir())
    assert all(r["status"] == "ok" and os.path.isfile(r["outputs"][0]) for r in leases)
    statuses = [s for stdout, _ in outcomes for s in json.loads(stdout)]
    assert statuses.count("ok") == 40 and len(statuses) == 80


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


def test_an_item_whose_claim_was_taken_over_is_failed_and_not_recorded(tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"x")
    with Lease(lease_s=30) as stalled, Lease(lease_s=30) as other:
        batch = plan(batch_options(photos), out, PROMPT, {"Load": Loader}, stalled)
        (item,) = batch.items
        assert batch.start(item) is None
        claim = batch.claim_path(item)
        os.utime(claim, (time.time() - 31,) * 2)  # not renewed for longer than the lease
        assert other.claim(claim)
        result = batch.commit(Result(item, "ok", [], reported=0))
        assert result.status == "failed" and "not recorded" in result.error and "taken over" in result.error
        assert (out / MANIFEST).read_text() == ""
        assert json.loads(claim.read_text())["run"] == other.run  # the other run's claim is left alone
