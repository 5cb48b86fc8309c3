"""The runner's folder batches (--batch-input) in process and on real ComfyUI 0.8.0 servers (--server), as users run
it: run_workflow.py in a subprocess of ComfyUI's Python, the shipped workflow codec_motion_save.json (Load Video ->
Motion Vector Encode -> Save Motion Vectors + a preview) over a folder of short real clips (shared/data crops) and one
file that is not a video. Shown: one output folder per input, the manifest, the failing file reported while the rest
goes on, resume after an interrupted batch without redoing finished items, no file overwritten that the batch did not
write, two runs on one output folder (in one PID namespace and in two, where neither sees the other's pids) that run
every item exactly once and never remove each other's staging, and a batch over two servers, one killed mid-way, that
finishes every item exactly once."""
from __future__ import annotations

import http.server
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request

import harness
import pytest
from comfy_servers import comfy_base, comfy_servers, free_port

RUNNER = harness.PACK_ROOT / "run_workflow.py"
WORKFLOW = harness.PACK_ROOT / "workflows" / "codec_motion_save.json"
CLIPS = {"a1": 100, "a2": 130, "a3": 160}  # name -> start frame in car-detection.mp4
FRAMES = 4


@pytest.fixture()
def videos(comfy_nodes, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name, start in CLIPS.items():
        harness.write_clip(folder / f"{name}.mp4", frames=FRAMES, height=48, width=64, start=start)
    (folder / "a2_notes.mp4").write_text("not a video")  # sorted between the clips: the batch must go on after it
    (folder / ".hidden.mp4").write_text("skipped: hidden")
    (folder / "subfolder").mkdir()
    return folder


class Run:
    """run_workflow.py in a subprocess (in a PID namespace of its own with pid_namespace: there it is pid 1, and it
    sees no process outside); stderr lines collected by a thread (watch() waits for one)."""

    def __init__(self, *args, pid_namespace=False):
        env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
        prefix = ["unshare", "--pid", "--kill-child", "--mount-proc"] if pid_namespace else []
        self.process = subprocess.Popen([*prefix, sys.executable, str(RUNNER), *map(str, args)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        start_new_session=True)
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                self.seen.notify_all()

    def watch(self, predicate, timeout=300) -> str:
        with self.seen:
            assert self.seen.wait_for(lambda: any(map(predicate, self.lines)) or self.process.poll() is not None,
                                      timeout), self.err[-3000:]
        return next((line for line in self.lines if predicate(line)), "")

    def finish(self, timeout=600):
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return self.process.returncode, out

    @property
    def err(self) -> str:
        return "\n".join(self.lines)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def signal(self, number):
        """To the run's process group (unshare and the runner in its namespace alike)."""
        os.killpg(self.process.pid, number)


def manifest(path):
    return [json.loads(line) for line in (path / "manifest.jsonl").read_text().splitlines()]


def check_outputs(out, records, codec):
    """Each clip finished once: one ok line, its folder holding its saved motion (all frame pairs) and preview."""
    ok = [r for r in records if r["status"] == "ok"]
    assert sorted(os.path.basename(r["input"]) for r in ok) == sorted(f"{n}.mp4" for n in CLIPS), records
    for record in ok:
        name = os.path.basename(record["input"])[:-4]
        assert all(p.startswith(str(out / name) + os.sep) and os.path.isfile(p) for p in record["outputs"]), record
        saved = [p for p in record["outputs"] if p.endswith(".safetensors")]
        assert len(saved) == 1 and len(record["outputs"]) == 2, record  # + the preview .webp
        motion, residual, header = codec.load_motion_vectors(saved[0])
        assert motion.num_frames == FRAMES and residual.shape == (FRAMES - 1, 48, 64, 3) and header["source"]


def test_folder_batch_in_process_resumes_without_redoing_finished_items(videos, tmp_path):
    codec = harness.pack_module().codec
    base, out = comfy_base(tmp_path / "base"), tmp_path / "out"
    (out / "a3" / "vcut").mkdir(parents=True)
    foreign = out / "a3" / "vcut" / "motion_vectors_00001_.safetensors"
    foreign.write_text("a file this batch did not write")
    command = [WORKFLOW, "--comfyui", harness.comfy_path(), "--cpu", "--batch-input", f"LoadVideo.file={videos}",
               "--output-dir", out, "--comfy-args", f"--base-directory {base}"]
    first = Run(*command)
    first.watch(lambda line: "[1/4] a1.mp4: ok" in line)
    first.kill()  # SIGKILL after the first item: nothing of the run can clean up
    done_first = [r for r in manifest(out) if r["status"] == "ok"]
    owner = f"{first.process.pid}-"
    left = [*(base / "input").glob(f".vcut-batch-{owner}*"), *out.glob(f".vcut-batch-{owner}*"),
            *pathlib.Path(tempfile.gettempdir()).glob(f"vcut-run-temp-{owner}*")]
    assert done_first and len(left) == 3, left  # its staging folders (input, output) and its temp folder

    second = Run(*command)
    code, stdout = second.finish()
    assert code == 1, second.err[-3000:]  # a2_notes.mp4 failed, the rest finished
    assert not any(path.exists() for path in left), left  # the dead run's folders, removed at start
    assert not any((base / "input").glob(".vcut-batch-*")) and not any(out.glob(".vcut-batch-*"))
    for record in done_first:
        assert f"{os.path.basename(record['input'])}: skipped, done earlier" in second.err
    records = manifest(out)
    assert len([r for r in records if r["input"].endswith("a1.mp4")]) == 1  # never redone
    check_outputs(out, records, codec)  # each clip ok exactly once
    latest = {r["input"]: r for r in records}  # the not-a-video file may have failed in the first run too
    failed = [r for r in latest.values() if r["status"] == "failed"]
    assert [os.path.basename(r["input"]) for r in failed] == ["a2_notes.mp4"] and failed[0]["outputs"] == []
    error = failed[0]["error"]  # ComfyUI's Load Video opens the file lazily: Get Video Components finds it invalid
    assert "node 3 (GetVideoComponents" in error and "Invalid data" in error
    assert str(videos / "a2_notes.mp4") in error  # the user's path, not the link the batch reads it through
    assert "[3/4] a2_notes.mp4: FAILED" in second.err, second.err[-3000:]
    assert foreign.read_text() == "a file this batch did not write"  # not overwritten: ours is "-2"
    a3 = next(r for r in records if r["input"].endswith("a3.mp4"))
    assert str(out / "a3" / "vcut" / "motion_vectors_00001_-2.safetensors") in a3["outputs"]
    assert sorted(stdout.split()) == sorted(p for r in records if r["status"] == "ok" for p in r["outputs"])
    assert "item" in second.err and "status" in second.err and "items:" in second.err  # the summary table


SHARED_CLIPS = {f"s{i:02d}": 100 + 10 * i for i in range(1, 11)}  # enough items that the first run is mid-batch


@pytest.mark.parametrize("namespaces", ["one PID namespace", "two PID namespaces"], ids=["same_pidns", "two_pidns"])
def test_two_runs_on_one_output_folder_run_every_item_once(comfy_nodes, tmp_path, namespaces):
    """The first run is frozen (SIGSTOP) after its first item, mid-batch, while the second starts on the same output,
    input and temporary folders (with two namespaces, the second in a PID namespace of its own, where the first's pid
    names no process): the second must leave the first's live staging alone and take only the items the first does
    not hold; once the first goes on, every item has exactly one manifest line and all its files."""
    if namespaces == "two PID namespaces" and os.geteuid() != 0:
        pytest.fail("unshare --pid needs root (CI runs as root)")
    codec = harness.pack_module().codec
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    for name, start in SHARED_CLIPS.items():
        harness.write_clip(clips / f"{name}.mp4", frames=FRAMES, height=48, width=64, start=start)
    base = comfy_base(tmp_path / "base")
    command = [WORKFLOW, "--comfyui", harness.comfy_path(), "--cpu", "--batch-input", f"LoadVideo.file={clips}",
               "--output-dir", out, "--comfy-args", f"--base-directory {base}"]
    apart = namespaces == "two PID namespaces"
    first = Run(*command)
    second = None
    try:
        first.watch(lambda line: "[1/10] s01.mp4: ok" in line)
        first.signal(signal.SIGSTOP)
        found = list(out.glob(".vcut-batch-*"))
        assert len(found) == 1, (found, first.err[-3000:])  # frozen mid-batch: its output staging is there
        ours = found[0]
        run_id = ours.name.removeprefix(".vcut-batch-")
        staging = [ours, base / "input" / ours.name, pathlib.Path(tempfile.gettempdir()) / f"vcut-run-temp-{run_id}"]
        assert all(path.is_dir() for path in staging), staging  # the first run's staging and temporary folders
        second = Run(*command, pid_namespace=apart)
        # an item the second run ran or left (its start-up clean-up is done by then; "skipped" lines come before it)
        second.watch(lambda line: re.search(r"\[\d+/10\] s\d+\.mp4: (ok|left|FAILED)", line) is not None)
        kept = [path.exists() for path in staging]
        first.signal(signal.SIGCONT)
        (code_first, out_first), (code_second, out_second) = first.finish(), second.finish()
    finally:
        if first.process.poll() is None:
            first.signal(signal.SIGCONT)
        for run in (first, second):
            if run is not None:
                run.kill()
    assert all(kept), list(zip(staging, kept, strict=True))
    assert code_first == 0 and code_second == 0, first.err[-3000:] + "\n-----\n" + second.err[-3000:]
    assert "[vcut-run] removed" not in second.err and "[vcut-run] took over" not in second.err, second.err[-3000:]
    records = manifest(out)
    assert sorted(os.path.basename(r["input"]) for r in records) == sorted(f"{n}.mp4" for n in SHARED_CLIPS), records
    for record in records:  # each clip once, by one of the runs, with all its files
        name = os.path.basename(record["input"])[:-4]
        assert record["status"] == "ok" and record["reported"] == 2 and len(record["outputs"]) == 2, record
        assert all(p.startswith(str(out / name) + os.sep) and os.path.isfile(p) for p in record["outputs"]), record
        saved = next(p for p in record["outputs"] if p.endswith(".safetensors"))
        assert codec.load_motion_vectors(saved)[0].num_frames == FRAMES
        assert sorted(p.name for p in (out / name).rglob("*") if p.is_file()) == sorted(
            os.path.basename(p) for p in record["outputs"])  # nothing written twice
    assert set(out_first.split()) | set(out_second.split()) == {p for r in records for p in r["outputs"]}
    assert not any(out.glob(".vcut-batch-*")) and not any((base / "input").glob(".vcut-batch-*"))
    assert not any((out / ".vcut-claims").iterdir()) and not any(path.exists() for path in staging)


def test_batch_naming_traps_are_refused_or_named(comfy_nodes, tmp_path):
    """An output folder that is the input folder (the manifest would become an input) is refused; an input whose stem
    is the manifest's name, and one whose name ComfyUI reads as an annotated path, run under their own names."""
    clips, base = tmp_path / "clips", comfy_base(tmp_path / "base")
    clips.mkdir()
    harness.write_clip(clips / "manifest.jsonl.mp4", frames=FRAMES, height=48, width=64, start=100)
    harness.write_clip(tmp_path / "take.mp4", frames=FRAMES, height=48, width=64, start=130)
    (tmp_path / "take.mp4").rename(clips / "take.mp4 [output]")  # ComfyUI would read it from its output folder
    common = [WORKFLOW, "--comfyui", harness.comfy_path(), "--cpu", "--batch-input", f"LoadVideo.file={clips}",
              "--comfy-args", f"--base-directory {base}"]
    refused = Run(*common, "--output-dir", clips)
    code, stdout = refused.finish()
    assert code == 2 and stdout == "" and not (clips / "manifest.jsonl").exists()
    assert f"the manifest {clips / 'manifest.jsonl'} would lie in the --batch-input folder {clips}" in refused.err
    out = tmp_path / "out"
    run = Run(*common, "--output-dir", out)
    code, _ = run.finish()
    assert code == 0, run.err[-3000:]
    records = {os.path.basename(r["input"]): r for r in manifest(out)}
    assert set(records) == {"manifest.jsonl.mp4", "take.mp4 [output]"}
    assert all(r["status"] == "ok" and len(r["outputs"]) == 2 for r in records.values()), records
    assert all(p.startswith(str(out / "manifest.jsonl.mp4") + os.sep) for p in records["manifest.jsonl.mp4"]["outputs"])
    assert all(p.startswith(str(out / "take") + os.sep) for p in records["take.mp4 [output]"]["outputs"])


@pytest.fixture()
def not_comfyui(tmp_path):
    """A plain HTTP server on loopback: answers, but is not ComfyUI."""
    (tmp_path / "www").mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731  (a one-line handler factory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_batch_on_two_servers_with_one_killed_finishes_every_item_once(videos, tmp_path, not_comfyui):
    codec = harness.pack_module().codec
    out = tmp_path / "out"
    with comfy_servers(tmp_path / "servers", 2) as (a, b):
        dead = f"http://127.0.0.1:{free_port()}"
        run = Run(WORKFLOW, "--batch-input", f"LoadVideo.file={videos}", "--output-dir", out,
                  "--server", a.url, "--server", b.url, "--server", dead, "--server", not_comfyui)
        try:
            run.watch(lambda line: f"-> {b.url} (prompt " in line)
            b.kill()  # mid-batch, with a job of ours on it
            code, stdout = run.finish()
        finally:
            run.kill()
        assert code == 1, run.err[-4000:]  # only a2_notes.mp4 failed
        assert f"skipping --server {dead} does not answer" in run.err
        assert f"skipping --server {not_comfyui} answers but is not a ComfyUI server" in run.err
        assert f"server {b.url} failed" in run.err and "goes to another server" in run.err
        records = manifest(out)
        check_outputs(out, records, codec)
        assert len(records) == 4  # every item exactly once: 3 ok, 1 failed, no repeats
        failed = [r for r in records if r["status"] == "failed"]
        assert [os.path.basename(r["input"]) for r in failed] == ["a2_notes.mp4"]
        assert "GetVideoComponents" in failed[0]["error"] and "Invalid data" in failed[0]["error"]
        assert failed[0]["server"] == a.url
        assert {r["server"] for r in records if r["status"] == "ok"} <= {a.url, b.url}
        assert sorted(stdout.split()) == sorted(p for r in records if r["status"] == "ok" for p in r["outputs"])

        # resume against the surviving server: nothing is redone, the failed file is tried again
        again = Run(WORKFLOW, "--batch-input", f"LoadVideo.file={videos}", "--output-dir", out, "--server", a.url)
        code, _ = again.finish()
        assert code == 1 and again.err.count("skipped, done earlier") == 3, again.err[-3000:]
        assert len(manifest(out)) == 5

        # a workflow with no input of the named kind, an input that takes no file name, a folder that is not there:
        # refused before anything runs (node definitions from the server's /object_info)
        common = ["--output-dir", out, "--server", a.url]
        errors = {"no such node": Run(WORKFLOW, "--batch-input", f"LoadImage.image={videos}", *common),
                  "not a file input": Run(WORKFLOW, "--batch-input", f"VCUTMotionVectorEncode.search_range={videos}",
                                          *common),
                  "no folder": Run(WORKFLOW, "--batch-input", f"LoadVideo.file={tmp_path / 'nowhere'}", *common)}
        results = {name: (bad.finish(), bad.err) for name, bad in errors.items()}
        (code, stdout), err = results["no such node"]
        assert code == 2 and "no node with id, title or type 'LoadImage'" in err and stdout == ""
        (code, stdout), err = results["not a file input"]
        assert code == 2 and "input 'search_range' is a INT input, not a file name" in err and stdout == ""
        (code, stdout), err = results["no folder"]
        assert code == 2 and "nowhere is not a folder" in err and len(manifest(out)) == 5

        # a single run (no batch) of the tiny random-weight SVD workflow on the server, its video downloaded
        prompt = harness.workflow_prompt(harness.load_workflow("svd_vcut_img2vid.json"), {
            "SVD_img2vid_Conditioning": {"width": 32, "height": 32, "video_frames": 2}, "KSampler": {"steps": 1}})
        (tmp_path / "svd.json").write_text(json.dumps(prompt))
        (a.base / "input").mkdir(exist_ok=True)
        harness.write_inputs(a.base / "input")
        single = Run(tmp_path / "svd.json", "--output-dir", tmp_path / "svd", "--server", a.url)
        code, stdout = single.finish()
        assert code == 0, single.err[-4000:] + a.log()[-3000:]
        assert [os.path.basename(p) for p in stdout.split()] == ["vcut_svd_00001_.mp4"]
        assert os.path.getsize(stdout.split()[0]) > 0

        # a job queued behind another client's long prompt hears nothing: with --progress-timeout the server is
        # dropped and the job is cancelled there (POST /api/jobs/<id>/cancel on ComfyUI 0.30.0; /queue delete and
        # /interrupt on 0.8.0, which has no cancel)
        long = harness.workflow_prompt(harness.load_workflow("svd_vcut_img2vid.json"), {
            "SVD_img2vid_Conditioning": {"width": 32, "height": 32, "video_frames": 2}, "KSampler": {"steps": 10000}})
        blocker = post_json(a.url + "/prompt", {"prompt": long, "client_id": "another-user"})["prompt_id"]
        try:
            dropped = Run(tmp_path / "svd.json", "--output-dir", tmp_path / "dropped", "--server", a.url,
                          "--progress-timeout", "3")
            code, stdout = dropped.finish()
            assert code == 1 and stdout == "", dropped.err[-3000:]
            assert f"server {a.url} failed (no message about the job for 3 s" in dropped.err
            ours = dropped.watch(lambda line: f"-> {a.url} (prompt " in line).split("(prompt ")[1].rstrip(")")
            assert f"cancelled prompt {ours}" in dropped.err, dropped.err[-3000:]
            queue = get_json(a.url + "/queue")
            assert ours not in json.dumps(queue) and blocker in json.dumps(queue["queue_running"])
            assert ours not in get_json(a.url + "/history")  # never run
        finally:
            post_json(a.url + "/interrupt", {})


def post_json(url: str, data: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())
