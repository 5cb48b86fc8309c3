"""The runner's --server mode against stub servers that speak ComfyUI's API badly (stub_servers.py, on 127.0.0.1,
stopped by each test): a /history that names files outside the output folder, names with a newline, a server that
never answers, one that sends a byte a second, one that takes a prompt and never runs it; and the runner's named
errors for careless command lines. run_workflow.py runs as users run it, in a subprocess of ComfyUI's Python (it
needs no ComfyUI of its own for --server); short deadlines keep each case to seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import harness
from stub_servers import Stub, stub_server

RUNNER = harness.PACK_ROOT / "run_workflow.py"
PROMPT = {"1": {"class_type": "StubSave", "inputs": {"image": "x.png", "filename_prefix": "out"},
                "_meta": {"title": "Save"}}}


def runner(*args, timeout=120):
    """(exit status, stdout, stderr, seconds) of one run_workflow.py run."""
    began = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    done = subprocess.run([sys.executable, str(RUNNER), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - began


def clean_error(err: str) -> str:
    """The runner's own message: "error: ..." at the end, no traceback."""
    assert "Traceback" not in err, err[-3000:]
    return err[err.rindex("error: "):]


def test_paths_named_by_a_server_stay_inside_the_output_folder_and_control_characters_are_safe(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("1.png", "2.png", "3.png", "4\nnewline.png"):
        (photos / name).write_bytes(b"an input")
    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT))
    out = tmp_path / "out"
    hostile = [[{"filename": "evil.pth", "subfolder": "../../escape", "type": "output"}],
               [{"filename": "authorized_keys", "subfolder": str(tmp_path / "abs"), "type": "output"}],
               [{"filename": str(tmp_path / "absolute.txt"), "subfolder": "", "type": "output"}],
               [{"filename": "fine\nname.png", "subfolder": "sub", "type": "output"}]]
    with stub_server(Stub("history", hostile)) as stub:
        code, stdout, err, _ = runner(tmp_path / "prompt.json", "--server", stub.url, "--output-dir", out,
                                      "--batch-input", f"StubSave.image={photos}")
    assert code == 1, err[-3000:]  # three items failed, the batch went on
    assert "Traceback" not in err, err[-3000:]
    for name in ("escape", "abs", "absolute.txt"):  # nothing landed outside the output folder
        assert not (tmp_path / name).exists(), name
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed", "failed", "ok"], records
    assert "'..' leads out" in records[0]["error"] and "absolute subfolder" in records[1]["error"]
    assert "not a plain name" in records[2]["error"]
    assert all("nothing was downloaded" in r["error"] and not r["outputs"] for r in records[:3])
    assert not any((out / name).exists() for name in ("1", "2", "3"))  # nothing written for the refused items
    assert stub.uploads[-1] == "4_newline.png"  # the newline never reached a header
    assert records[3]["outputs"] == [str(out / "4_newline" / "sub" / "fine_name.png")]
    assert stdout.splitlines() == records[3]["outputs"]  # one path a line
    assert stub.views[-1]["filename"] == "fine\nname.png"  # asked for under the server's own name


def test_a_server_that_never_answers_is_given_up_within_the_deadlines(tmp_path):
    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT))
    for mode, flags in (("silent", ["--read-timeout", "2", "--request-timeout", "3"]),
                        # a byte a second: the read deadline (5 s) never passes, the whole request's (3 s) does
                        ("trickle", ["--read-timeout", "5", "--request-timeout", "3"])):
        with stub_server(Stub(mode)) as stub:
            code, stdout, err, seconds = runner(tmp_path / "prompt.json", "--server", stub.url, "--output-dir",
                                                tmp_path / "out", "--connect-timeout", "2", *flags)
        assert code == 2 and stdout == "", (mode, err[-3000:])
        assert f"skipping --server {stub.url} does not answer (GET /system_stats: no answer within the deadlines" \
            in err, (mode, err[-3000:])
        assert "no --server answered" in clean_error(err)
        assert seconds < 60, (mode, seconds)  # today's runner waits 600 s (sock_read), a trickle for ever


def test_a_job_without_progress_drops_its_server_is_cancelled_there_and_runs_elsewhere(tmp_path):
    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT))
    done = [[{"filename": "out_00001_.png", "subfolder": "", "type": "output"}]]
    with stub_server(Stub("stuck")) as stuck, stub_server(Stub("history", done)) as good:
        code, stdout, err, seconds = runner(tmp_path / "prompt.json", "--server", stuck.url, "--server", good.url,
                                            "--output-dir", tmp_path / "out", "--progress-timeout", "3")
    assert code == 0, err[-3000:]
    assert f"server {stuck.url} failed (no message about the job for 3 s (--progress-timeout))" in err
    assert stuck.prompts and stuck.cancelled == stuck.prompts  # cancelled through /api/jobs/<id>/cancel
    assert f"cancelled prompt {stuck.prompts[0]}" in err
    assert good.prompts and stdout.split() == [str(tmp_path / "out" / "out_00001_.png")]
    assert seconds < 60


def test_careless_command_lines_get_named_errors(tmp_path):
    (tmp_path / "prompt.json").write_text(json.dumps(PROMPT))
    cycle = {"1": {"class_type": "StubSave", "inputs": {"images": ["2", 0]}},
             "2": {"class_type": "StubSave", "inputs": {"images": ["3", 0]}},
             "3": {"class_type": "StubSave", "inputs": {"images": ["1", 0]}}}
    (tmp_path / "cycle.json").write_text(json.dumps(cycle))
    (tmp_path / "a folder.json").mkdir()
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "manifest").mkdir()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "1.png").write_bytes(b"x")
    out = ["--output-dir", tmp_path / "out"]
    with stub_server(Stub("history")) as stub:
        cases = {
            "workflow is a folder": (tmp_path / "a folder.json", "--server", stub.url, *out),
            "output-dir is a file": (tmp_path / "prompt.json", "--server", stub.url, "--output-dir", tmp_path / "file"),
            "manifest is a folder": (tmp_path / "prompt.json", "--server", stub.url, *out, "--manifest",
                                     tmp_path / "manifest", "--batch-input", f"StubSave.image={tmp_path / 'photos'}"),
            "set a link input": (tmp_path / "prompt.json", "--server", stub.url, *out, "--set", "1.images=3"),
            "cycle": (tmp_path / "cycle.json", "--server", stub.url, *out),
        }
        results = {name: runner(*args) for name, args in cases.items()}
        assert stub.prompts == []  # nothing ran
    for name, (code, stdout, err, _) in results.items():
        assert code == 2 and stdout == "", (name, err[-3000:])
    message = {name: clean_error(err) for name, (_, _, err, _) in results.items()}
    assert "a folder.json is a folder: give a workflow .json file" in message["workflow is a folder"]
    assert f"--output-dir {tmp_path / 'file'} is a file, not a folder" in message["output-dir is a file"]
    assert f"--manifest {tmp_path / 'manifest'} is a folder" in message["manifest is a folder"]
    assert not (tmp_path / "out" / "photos").exists() and not (tmp_path / "out" / "1").exists()
    assert "input 'images' of node 1 (StubSave) takes a IMAGE from another node's output (a link), not a value" \
        in message["set a link input"] and "image, filename_prefix" in message["set a link input"]
    assert "its links form a cycle, node 3 (StubSave) -> node 2 (StubSave) -> node 1 (StubSave) -> node 3 " \
        "(StubSave)" in message["cycle"]
