"""run_workflow.py at the limits of what a workflow can hold, as users run it (a subprocess of ComfyUI's Python), in
this process's ComfyUI and on a real ComfyUI server (--server): 1500 chained Reroutes convert and run; an API chain of
MAX_CHAIN nodes, saved last node first, runs (ComfyUI validates and caches by recursion along the links: this is the
proof that the limit fits this release, in process and in a server); one node more, a cycle through 1500 nodes and a
link to an output slot its node does not have are refused with exit status 2 and a message naming the nodes, never a
RecursionError or an IndexError from ComfyUI's validation. The malformed shapes themselves (refused before ComfyUI
starts) are tests/core/test_workflow_files.py."""
import json
import os
import pathlib
import subprocess
import sys

import harness
import pytest
from comfy_servers import ComfyServer
from PIL import Image

from vcut.runner.convert import MAX_CHAIN

RUNNER = harness.PACK_ROOT / "run_workflow.py"
REROUTES = 1500


def reroutes_workflow(count: int) -> dict:
    """LoadImage -> `count` chained Reroutes -> ImageInvert -> SaveImage, as the frontend saves it."""
    nodes = [{"id": 1, "type": "LoadImage", "mode": 0, "inputs": [], "widgets_values": ["photo.png", "image"],
              "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK"}]}]
    links = [[1, 1, 0, 2, 0, "IMAGE"]]
    for i in range(2, count + 2):
        nodes.append({"id": i, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": i - 1}],
                      "outputs": [{"name": "", "type": "IMAGE", "links": [i]}]})
        links.append([i, i, 0, i + 1, 0, "IMAGE"])
    last = count + 2
    nodes += [{"id": last, "type": "ImageInvert", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE",
                                                                          "link": last - 1}],
               "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [last]}]},
              {"id": last + 1, "type": "SaveImage", "mode": 0, "widgets_values": ["limits/reroutes"],
               "inputs": [{"name": "images", "type": "IMAGE", "link": last}], "outputs": []}]
    links.append([last, last, 0, last + 1, 0, "IMAGE"])
    return {"nodes": nodes[::-1], "links": links}  # saved last node first


def api_chain(length: int, prefix: str = "limits/chain") -> dict:
    """LoadImage (node 1) -> ImageInvert ... -> SaveImage: `length` nodes one after another, last node first."""
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}}
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(length)] = {"class_type": "SaveImage", "inputs": {"images": [str(length - 1), 0],
                                                                 "filename_prefix": prefix}}
    return dict(reversed(prompt.items()))


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "in").mkdir()
    Image.open(harness.TEST_DATA / "photos" / "chelsea.png").convert("RGB").resize((24, 16)).save(
        tmp_path / "in" / "photo.png")
    cycle = api_chain(REROUTES)
    cycle["1"]["inputs"]["image"] = [str(REROUTES - 1), 0]  # LoadImage has no such input: the cycle comes first
    slot = reroutes_workflow(1)
    slot["links"][-1][2] = 5  # SaveImage fed by ImageInvert's output 5 (it has one output)
    workflows = {"reroutes": reroutes_workflow(REROUTES), "chain": api_chain(MAX_CHAIN),
                 "too long": api_chain(MAX_CHAIN + 1), "cycle": cycle, "slot": slot}
    for name, data in workflows.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return tmp_path


def start(*args):
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    return subprocess.Popen([sys.executable, str(RUNNER), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process):
    out, err = process.communicate(timeout=900)  # several ComfyUI starts share a loaded 2-core machine
    return process.returncode, out, err


def local_run(folder, name):
    (folder / "base" / "custom_nodes").mkdir(parents=True, exist_ok=True)
    return start(folder / f"{name}.json", "--comfyui", harness.comfy_path(), "--cpu", "--input-dir", folder / "in",
                 "--output-dir", folder / "out" / name, "--comfy-args", f"--base-directory {folder / 'base'}")


def check(results: dict, folder) -> None:
    """What each run must give, in process and on a server alike."""
    for name, (_, _, err) in results.items():
        ours = err[err.rindex("\nerror: ") + 1:] if "\nerror: " in err else ""
        assert "Traceback" not in ours and "RecursionError" not in err and "recursion" not in ours, (name, err[-3000:])
    for name in ("reroutes", "chain"):
        code, out, err = results[name]
        written = out.split()
        assert code == 0 and len(written) == 1 and written[0].endswith(".png"), f"{name}: {err[-4000:]}"
        assert pathlib.Path(written[0]).is_relative_to(folder / name)
        assert Image.open(written[0]).size == (24, 16)
    code, out, err = results["too long"]
    assert code == 2 and out == "", err[-3000:]
    assert (f"it chains {MAX_CHAIN + 1} nodes one after another (node 1 (LoadImage) -> ... -> node {MAX_CHAIN + 1} "
            f"(SaveImage))") in err and f"keep chains to {MAX_CHAIN} nodes" in err
    code, out, err = results["cycle"]
    assert code == 2 and out == "", err[-3000:]
    assert (f"its links form a cycle, node 1 (LoadImage) -> node 2 (ImageInvert) -> node 3 (ImageInvert) -> node 4 "
            f"(ImageInvert) -> ... {REROUTES - 7} more nodes ... -> node {REROUTES - 2} (ImageInvert) -> node "
            f"{REROUTES - 1} (ImageInvert) -> node 1 (LoadImage); ComfyUI runs a node only after") in err, err[-2000:]
    code, out, err = results["slot"]
    assert code == 2 and out == "", err[-3000:]
    assert "node 4 (SaveImage) input 'images' takes output 5 of node 3 (ImageInvert), which has 1 output (IMAGE" \
        in err, err[-2000:]


def test_long_chains_run_and_chains_past_the_limit_are_named_in_process(files):
    runs = {name: local_run(files, name) for name in ("reroutes", "chain", "too long", "cycle", "slot")}
    results = {name: finish(process) for name, process in runs.items()}
    check(results, files / "out")


def test_the_same_on_a_server(files):
    server = ComfyServer(files / "server")
    try:
        server.wait_ready()
        (server.base / "input").mkdir(exist_ok=True)
        (server.base / "input" / "photo.png").write_bytes((files / "in" / "photo.png").read_bytes())
        results = {}
        for name in ("reroutes", "chain", "too long", "cycle", "slot"):  # one job at a time, as a server takes them
            results[name] = finish(start(files / f"{name}.json", "--server", server.url,
                                         "--output-dir", files / "out" / name))
        check(results, files / "out")
    finally:
        server.stop()
