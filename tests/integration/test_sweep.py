"""The runner's --sweep as users run it: run_workflow.py in a subprocess of ComfyUI's Python, the shipped
svd_speed_vs_quality.json (plain SVD-XT and the fast chain into Video Compare) with its checkpoint loader swapped for
the tiny random-weight SVD (tests/integration/server_nodes, loaded by ComfyUI's own custom-node loader), a 2 x 2 grid
of Cut Step Scheduler.cut_step x UNet Feature Cache.interval. Shown: a 4-row table (CSV and markdown) whose MACs
ratios, GMACs and Video Compare numbers are the ones the nodes reported while they ran (their log lines, in process;
their progress texts, on a server), the reference sampled once, resume from the manifest, and named errors (exit 2)
for unknown nodes, unknown inputs and values outside a widget's range or choices, before anything runs."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import harness
import pytest
from comfy_servers import SERVER_NODES, comfy_servers

RUNNER = harness.PACK_ROOT / "run_workflow.py"
SMALL = ["--set", "SVD_img2vid_Conditioning.width=32", "--set", "SVD_img2vid_Conditioning.height=32",
         "--set", "SVD_img2vid_Conditioning.video_frames=3", "--set", "KSampler.steps=3"]
GRID = ["--sweep", "Cut Step Scheduler.cut_step=2,3", "--sweep", "UNet Feature Cache.interval=1,2"]
COST = re.compile(r"VCUT run: .*; ([0-9.e+-]+) GMACs vs ([0-9.e+-]+) unpatched"
                  r"(?: = ([0-9.]+)x)?; [0-9.]+ s")
PSNR = re.compile(r"Video Compare: fast vs plain SVD-XT: mean PSNR ([0-9.]+) dB")


@pytest.fixture()
def setup(tmp_path):
    """The shipped workflow with the tiny checkpoint loader, an input folder, a ComfyUI base with the test nodes."""
    workflow = json.loads((harness.PACK_ROOT / "workflows" / "svd_speed_vs_quality.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "ImageOnlyCheckpointLoader":
            node["type"] = "VCUTTestCheckpoint"
    (tmp_path / "tiny.json").write_text(json.dumps(workflow))
    (tmp_path / "in").mkdir()
    harness.write_inputs(tmp_path / "in")
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "vcut_test_nodes").symlink_to(SERVER_NODES, target_is_directory=True)
    return tmp_path


def run(tmp_path, *extra, server=None):
    where = ["--server", server] if server else [
        "--comfyui", str(harness.comfy_path()), "--cpu", "--input-dir", str(tmp_path / "in"),
        "--comfy-args", f"--base-directory {tmp_path / 'base'}"]
    command = [sys.executable, str(RUNNER), str(tmp_path / "tiny.json"), *where,
               "--output-dir", str(tmp_path / "out"), *extra]
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                          cwd=str(harness.PACK_ROOT.parent))
    return done.returncode, done.stdout, done.stderr


def table(out):
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_table(out, reported_costs, reported_psnr):
    """4 rows in grid order, ok, whose numbers are the reported ones (in the order the items ran)."""
    rows = table(out)
    assert [(r["Cut Step Scheduler.cut_step"], r["UNet Feature Cache.interval"]) for r in rows] == [
        ("2", "1"), ("2", "2"), ("3", "1"), ("3", "2")]
    assert all(r["status"] == "ok" for r in rows), rows
    assert len(reported_costs) == 4 and len(reported_psnr) == 4, (reported_costs, reported_psnr)
    for row, (spent, _, ratio), psnr in zip(rows, reported_costs, reported_psnr, strict=True):
        assert float(row["macs_ratio"]) == float(ratio) and float(row["gmacs"]) == float(spent), (row, ratio)
        assert float(row["psnr_db"]) == float(psnr), (row, psnr)
        assert 0.0 < float(row["ssim"]) <= 1.0 and float(row["temporal_difference_pct"]) >= 0.0
    # the reference is the unpatched run (every step guided, every call full, the original cross-attention). At
    # interval 1 (the cache off) cut_step c guides steps 1..c-1: 4 (c = 2) and 5 (c = 3) of the unpatched 6 rows,
    # each row cheaper by VCUT; interval 2 also skips the deep blocks of every other step
    ratios = [float(r["macs_ratio"]) for r in rows]
    spent = [float(s) for s, _, _ in reported_costs]
    base = [float(b) for _, b, _ in reported_costs]
    assert len(set(base)) == 1, base  # one unpatched run for every combination
    assert spent[0] / spent[2] == pytest.approx(4 / 5, rel=0.01), spent
    assert spent[2] / base[2] < 5 / 6, (spent, base)  # VCUT's saving
    assert ratios[1] < ratios[0] < ratios[2] and ratios[3] < ratios[2], ratios
    markdown = (out / "sweep.md").read_text().splitlines()
    assert markdown[0].startswith("| Cut Step Scheduler.cut_step | UNet Feature Cache.interval | status")
    assert len([line for line in markdown if line.startswith("| ")]) == 1 + 4
    return rows


def test_sweep_in_process_tabulates_what_the_nodes_reported_and_resumes(setup):
    code, stdout, err = run(setup, *SMALL, *GRID)
    assert code == 0, err[-4000:]
    rows = check_table(setup / "out", COST.findall(err), PSNR.findall(err))
    assert err.count("running node 8 (KSampler, 'KSampler (plain SVD-XT)')") == 1  # the reference sampled once
    records = [json.loads(line) for line in (setup / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [r["sweep"]["values"] for r in records] == [
        {"Cut Step Scheduler.cut_step": c, "UNet Feature Cache.interval": i} for c in (2, 3) for i in (1, 2)]
    assert len(stdout.split()) == 4 and all((setup / "out" / p).is_file() for p in stdout.split())
    # run again: every combination is done (manifest), nothing runs, the same table
    code, _, err = run(setup, *SMALL, *GRID)
    assert code == 0, err[-4000:]
    assert "4 of the sweep's 4 combination(s) done earlier" in err and "running node" not in err
    assert table(setup / "out") == [{**r, "status": "skipped"} for r in rows]


@pytest.mark.parametrize("sweep, message", [
    ("Cut Step Schedulr.cut_step=2,3", "--sweep 'Cut Step Schedulr.cut_step=2,3': no node with id, title or type "
                                       "'Cut Step Schedulr'; the workflow has: "),
    ("Cut Step Scheduler.cutstep=2,3", "--sweep 'Cut Step Scheduler.cutstep=2,3': node 6 (VCUTCutStepScheduler) has "
                                       "no input 'cutstep'; its inputs are: "),
    ("Cut Step Scheduler.cut_step=0,17", "--sweep 'Cut Step Scheduler.cut_step=0,17': 0 is below the minimum of node "
                                         "6 (VCUTCutStepScheduler, 'Cut Step Scheduler') input 'cut_step': 1"),
    ("UNet Feature Cache.interval=2,500", "--sweep 'UNet Feature Cache.interval=2,500': 500 is above the maximum of "
                                          "node 7 (VCUTFeatureCache, 'UNet Feature Cache') input 'interval': 100"),
    ("UNet Feature Cache.schedule=uniform,fast", "--sweep 'UNet Feature Cache.schedule=uniform,fast': 'fast' is not a "
                                                 "choice of node 7 (VCUTFeatureCache, 'UNet Feature Cache') input "
                                                 "'schedule'; its choices: 'uniform'"),
    ("KSampler (fast).steps=2.5", "--sweep 'KSampler (fast).steps=2.5': 2.5 is not a whole number, which node 9 "
                                  "(KSampler, 'KSampler (fast)') input 'steps' takes"),
])
def test_sweep_names_unknown_names_and_values_out_of_range(comfy_nodes, sweep, message):
    """The sweep's checks on this ComfyUI's own node definitions (the runner's plan, in this process)."""
    import argparse

    from vcut.runner.common import RunnerError, prepare_prompt
    from vcut.runner.sweep import plan
    workflow = harness.load_workflow("svd_speed_vs_quality.json")
    options = argparse.Namespace(workflow="svd_speed_vs_quality.json", lenient=False, set=[], batch_input=None,
                                 sweep=[sweep])
    mapping = comfy_nodes.NODE_CLASS_MAPPINGS
    prompt = prepare_prompt(options, workflow, mapping, comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS)
    with pytest.raises(RunnerError) as error:
        plan(options, prompt, mapping)
    assert error.value.code == 2 and message in str(error.value), str(error.value)


def test_a_refused_sweep_exits_2_before_anything_runs(setup):
    code, stdout, err = run(setup, "--sweep", "Cut Step Scheduler.cut_step=0,17")
    assert code == 2, err[-4000:]
    assert "error: --sweep 'Cut Step Scheduler.cut_step=0,17': 0 is below the minimum of node 6" in err, err[-2000:]
    assert "Traceback" not in err and not stdout and "running node" not in err
    assert not (setup / "out" / "manifest.jsonl").exists()  # refused before the first item


def test_sweep_on_a_server_reads_the_progress_texts(setup):
    out = setup / "out"
    with comfy_servers(setup / "servers", 1) as (server,):
        (server.base / "input").mkdir(exist_ok=True)
        harness.write_inputs(server.base / "input")
        code, _, err = run(setup, *SMALL, *GRID, server=server.url)
        assert code == 0, err[-4000:]
        log = server.log()
    check_table(out, COST.findall(log), PSNR.findall(log))  # the server's own log lines, in the order it ran them
    assert len(table(out)) == 4
