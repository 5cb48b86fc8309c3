"""The headless runner (run_workflow.py) as users run it: a subprocess of ComfyUI's Python, ComfyUI imported from
--comfyui, a UI workflow of the pack's weight-free nodes on a real tests/data photo, overrides from the command
line, progress on stderr, files written into --output-dir, and clean errors for bad overrides / unknown nodes /
values ComfyUI's validation refuses."""
import json
import os
import re
import subprocess
import sys

import harness
import pytest
from PIL import Image

RUNNER = harness.PACK_ROOT / "run_workflow.py"


def ui_workflow(node_type="VCUTSalientMask", widgets=(0.0, True, 0.01, 0, 0.0, 0.5)):
    """LoadImage (a shared photo) -> Salient Mask -> SaveImage, as the frontend saves it, with a group and a note."""
    return {
        "last_node_id": 4, "last_link_id": 2, "version": 0.4, "config": {}, "extra": {},
        "groups": [{"id": 1, "title": "Saliency", "bounding": [0, 0, 900, 400]}],
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [], "widgets_values": ["photo.png", "image"],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": []}]},
            {"id": 2, "type": node_type, "mode": 0, "title": "Saliency",
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "mask", "type": "MASK", "links": []}, {"name": "preview", "type": "IMAGE", "links": [2]}],
             "widgets_values": list(widgets)},
            {"id": 3, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "outputs": [], "widgets_values": ["vcut/salient"]},
            {"id": 4, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["A test workflow."]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 1, 3, 0, "IMAGE"]],
    }


@pytest.fixture()
def setup(tmp_path):
    (tmp_path / "in").mkdir()
    size = (80, 56)  # a real photo, shrunk for the CPU
    Image.open(harness.TEST_DATA / "photos" / "chelsea.png").convert("RGB").resize(size).save(tmp_path / "in" / "photo.png")
    (tmp_path / "workflow.json").write_text(json.dumps(ui_workflow()))
    (tmp_path / "unknown.json").write_text(json.dumps(ui_workflow("NoSuchVcutNode")))
    # Motion Vector Encode (outputs: vectors, residual, preview) refuses a single image when it runs.
    (tmp_path / "fails.json").write_text(json.dumps(ui_workflow("VCUTMotionVectorEncode", ("fast search", "16", 8))))
    # The shipped SVD workflow as frontend 1.58 saves it with ComfyUI 0.38.1: SaveVideo's DynamicCombo layout.
    newer = json.loads((harness.PACK_ROOT / "workflows" / "svd_vcut_img2vid.json").read_text())
    next(n for n in newer["nodes"] if n["type"] == "SaveVideo")["widgets_values"] = ["video/vcut_svd", "mp4", "h264",
                                                                                      "auto", "auto"]
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    return tmp_path


def comfy_args(tmp_path, more=""):
    """ComfyUI's own options for a runner run: a temporary base directory (user settings, default output), so that
    nothing is written into the ComfyUI checkout."""
    (tmp_path / "comfy_base" / "custom_nodes").mkdir(parents=True, exist_ok=True)  # ComfyUI lists it at start
    return f"--base-directory {tmp_path / 'comfy_base'} {more}".strip()


def command(tmp_path, workflow="workflow.json", *extra, comfy=""):
    return [sys.executable, str(RUNNER), str(tmp_path / workflow), "--comfyui", str(harness.comfy_path()), "--cpu",
            "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
            "--comfy-args", comfy_args(tmp_path, comfy), *extra]


def start(args):
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}  # --comfyui is what points at ComfyUI
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(harness.PACK_ROOT.parent))


def finish(process):
    out, err = process.communicate(timeout=900)  # several ComfyUI starts share a loaded 2-core machine
    return process.returncode, out, err


def test_runner_runs_a_workflow_with_overrides(setup):
    code, out, err = finish(start(command(setup, "workflow.json", "--set", "Saliency.dilate=3",
                                          "--set", "SaveImage.filename_prefix=runs/mask", "--set", "2.refine=false")))
    assert code == 0, err[-3000:]
    files = [line for line in out.splitlines() if line.strip()]
    assert files == [str(setup / "out" / "runs" / "mask_00001_.png")]
    with Image.open(files[0]) as image:
        assert image.size == (80, 56)
    assert "set node 2 (VCUTSalientMask).dilate = 3" in err
    assert "set node 2 (VCUTSalientMask).refine = False" in err  # JSON-parsed: a boolean, not the string
    assert "set node 3 (SaveImage).filename_prefix = 'runs/mask'" in err
    assert "running node 2 (VCUTSalientMask, 'Saliency')" in err and "running node 3 (SaveImage" in err
    assert "node 2 (VCUTSalientMask, 'Saliency') step 1/" in err  # the node's ProgressBar, through ComfyUI's hook
    assert "finished in" in err
    assert "Total VRAM" in err  # ComfyUI's INFO log (model_management's device line) reaches stderr


def test_runner_errors_are_clean(setup, comfy_nodes):
    from vcut.runner.convert import WorkflowError, ui_to_api
    # what this ComfyUI's own SaveVideo (its INPUT_TYPES) makes of 0.38.1's layout: the runner must say the same
    with pytest.raises(WorkflowError) as refusal:
        ui_to_api(json.loads((setup / "newer.json").read_text()), comfy_nodes.NODE_CLASS_MAPPINGS)
    expected = str(refusal.value)
    assert expected.startswith("node 9 (SaveVideo): the workflow holds 5 widget values, but this ComfyUI's SaveVideo "
                               "takes ")
    runs = {
        "bad input": start(command(setup, "workflow.json", "--set", "Saliency.no_such_input=1",
                                   comfy="--verbose WARNING --disable-api-nodes")),
        "unknown type": start(command(setup, "unknown.json")),
        "invalid value": start(command(setup, "workflow.json", "--set", "2.dilate=-5")),
        "node fails": start(command(setup, "fails.json")),
        "newer widgets": start(command(setup, "newer.json")),
        "no weights": start([sys.executable, str(RUNNER), str(harness.PACK_ROOT / "workflows" / "svd_vcut_img2vid.json"),
                             "--comfyui", str(harness.comfy_path()), "--cpu", "--output-dir", str(setup / "out"),
                             "--comfy-args", comfy_args(setup)]),
    }
    results = {name: finish(process) for name, process in runs.items()}
    for name, (_code, out, err) in results.items():
        # The runner's message ends the output: "error: ..." and its indented lines, no Python traceback (ComfyUI's
        # own log may hold one before it: import warnings, the executor's log of a failing node).
        ours = err[err.rindex("\nerror: ") + 1:]
        assert "Traceback" not in ours and all(line.startswith(("error:", "  ")) for line in ours.splitlines()), \
            (name, err[-3000:])
        assert out.strip() == "", name  # nothing written
    code, _, err = results["bad input"]
    assert code == 2 and "has no input 'no_such_input'" in err and "dilate" in err  # lists the valid inputs
    assert "Total VRAM" not in err  # --comfy-args reached ComfyUI's parser: no INFO lines
    code, _, err = results["unknown type"]
    assert code == 2 and "unknown node type(s): NoSuchVcutNode (node 2)" in err
    code, _, err = results["invalid value"]
    assert code == 3 and "failed validation" in err and "node 2 (VCUTSalientMask, 'Saliency')" in err
    assert "dilate" in err and "-5" in err
    code, _, err = results["node fails"]
    assert code == 1 and "execution failed:" in err
    assert re.search(r"node 2 \(VCUTMotionVectorEncode, 'Saliency'\): vcut\.SettingError: images: ", err), err[-2000:]
    assert "at least 2" in err
    code, _, err = results["newer widgets"]  # named node, this ComfyUI's widgets, the values that do not fit
    assert code == 2 and "cannot convert" in err and expected in " ".join(err.split()), err[-3000:]
    code, _, err = results["no weights"]  # a shipped UI workflow, converted, then refused by ComfyUI's validation
    assert code == 3 and "node 1 (ImageOnlyCheckpointLoader" in err and "'svd_xt.safetensors' not in" in err
    assert not (setup / "out").exists() or not any((setup / "out").rglob("*.png"))


class FakeNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {}), "block": (["8", "16"], {})}, "optional": {"note": ("STRING", {})}}


def test_override_parsing_matching_and_validation_text():
    from vcut.runner.common import RunnerError, apply_overrides, format_validation, parse_override
    assert parse_override("KSampler.steps=10") == ("KSampler", "steps", 10, "10")
    assert parse_override("Scale image.crop=center") == ("Scale image", "crop", "center", "center")
    assert parse_override("6.text=a=b") == ("6", "text", "a=b", "a=b")
    assert parse_override("6.size=[1, 2]") == ("6", "size", [1, 2], "[1, 2]")
    for bad in ("steps=3", "KSampler.steps", ".x=1"):
        with pytest.raises(RunnerError, match="NODE.INPUT=VALUE"):
            parse_override(bad)
    prompt = {"5": {"class_type": "Fake", "inputs": {}, "_meta": {"title": "Fake"}},  # untitled: its type's name
              "6": {"class_type": "Fake", "inputs": {}, "_meta": {"title": "Second"}}}
    done = apply_overrides(prompt, ["Fake.steps=4", "Second.note=hi", "5.note=12", "5.block=8"], {"Fake": FakeNode})
    assert [e["inputs"] for e in prompt.values()] == [{"steps": 4, "note": "12", "block": "8"},  # text as typed
                                                      {"steps": 4, "note": "hi"}]  # by type: every node of it,
    # also the one whose title (its default, the type's name) matches first
    apply_overrides(prompt, ['6.note="quoted"'], {"Fake": FakeNode})
    assert prompt["6"]["inputs"]["note"] == "quoted"
    with pytest.raises(RunnerError, match=r"no node with id, title or type 'Nowhere'.*5 \(Fake 'Fake'\)"):
        apply_overrides(prompt, ["Nowhere.steps=1"], {"Fake": FakeNode})
    assert len(done) == 5
    with pytest.raises(RunnerError, match="has no input 'cfg'; its inputs are: steps, block, note"):
        apply_overrides(prompt, ["5.cfg=1"], {"Fake": FakeNode})
    text = format_validation({"message": "Prompt outputs failed validation", "details": ""},
                             {"2": {"class_type": "KSampler", "errors": [
                                 {"message": "Value smaller than min", "details": "steps: 0 < 1"}]}},
                             {"2": {"class_type": "KSampler", "_meta": {"title": "Sampler"}}})
    assert text.splitlines() == ["workflow failed validation: Prompt outputs failed validation",
                                 "  node 2 (KSampler, 'Sampler'):", "    - Value smaller than min: steps: 0 < 1"]
