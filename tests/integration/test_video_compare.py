"""Video Compare inside ComfyUI: loaded by ComfyUI's custom-node loader, run by its executor on a real clip (core's
LoadVideo -> GetVideoComponents; the candidate is core's ImageBlur of it), its numbers checked against the frames the
executor handed over, its preview shown on the node (the executor's UI output), bad inputs refused through the
executor, and its summary shown as the node's progress text by a real ComfyUI server."""
import math

import harness
import numpy as np
import pytest

FRAMES = 6
NODE = "VCUTVideoCompare"


@pytest.fixture()
def clip_dir(comfy_nodes, tmp_path):
    harness.write_clip(tmp_path / "clip.mp4", frames=FRAMES)
    with harness.comfy_folders(input_dir=tmp_path, temp_dir=tmp_path / "temp"):
        yield tmp_path


def _capture(node, slot, key):
    return {"class_type": "VCUTTestCapture", "inputs": {"value": [node, slot], "key": key}}


def _prompt(candidate=("blur", 0), labels=None):
    compare_inputs = {"reference": ["frames", 0], "candidate": list(candidate), **(labels or {})}
    prompt = {
        "video": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "frames": {"class_type": "GetVideoComponents", "inputs": {"video": ["video", 0]}},
        "blur": {"class_type": "ImageBlur", "inputs": {"image": ["frames", 0], "blur_radius": 1, "sigma": 1.0}},
        "few": {"class_type": "ImageFromBatch", "inputs": {"image": ["frames", 0], "batch_index": 0, "length": 3}},
        "compare": {"class_type": NODE, "inputs": compare_inputs},
        "r": _capture("frames", 0, "reference"), "c": _capture(candidate[0], candidate[1], "candidate"),
    }
    names = [n.lower() for n in harness.init_comfy().NODE_CLASS_MAPPINGS[NODE].RETURN_NAMES]
    prompt.update({f"out_{name}": _capture("compare", slot, name) for slot, name in enumerate(names)})
    return prompt


def test_schema_as_the_running_comfyui_lists_it(comfy_nodes):
    node = comfy_nodes.NODE_CLASS_MAPPINGS[NODE]
    assert NODE in harness.pack_node_ids()
    assert node.CATEGORY == "vcut/video" and node.OUTPUT_NODE is True
    inputs = node.INPUT_TYPES()
    assert inputs["required"]["reference"][0] == "IMAGE" and inputs["required"]["candidate"][0] == "IMAGE"
    assert {k: v[0] for k, v in inputs["optional"].items()} == {"reference_label": "STRING",
                                                                "candidate_label": "STRING"}
    assert list(node.RETURN_TYPES) == ["IMAGE", "IMAGE", "STRING", "STRING", "FLOAT", "FLOAT", "FLOAT"]


def test_blurred_copy_through_the_executor_gives_the_psnr_of_the_frames_it_got(clip_dir):
    out, history = harness.execute(_prompt(labels={"reference_label": "clip", "candidate_label": "blurred"}))
    r = out["reference"].numpy().astype(np.float64)
    c = out["candidate"].numpy().astype(np.float64)
    assert r.shape == c.shape and r.shape[0] == FRAMES
    mse = ((c - r) ** 2).reshape(FRAMES, -1).mean(axis=1)
    assert out["psnr"] == pytest.approx(10 * math.log10(1 / mse.mean()), abs=1e-9)
    rows = out["per_frame"].splitlines()[1:]
    assert [float(row.split(",")[1]) for row in rows] == pytest.approx(
        [10 * math.log10(1 / m) for m in mse], abs=1e-4)
    assert 0 < out["ssim"] < 1 and out["temporal_difference"] >= 0
    worst = int(np.argmax(mse))  # the lowest PSNR
    assert out["summary"].startswith(f"blurred vs clip: mean PSNR {out['psnr']:.1f} dB, min "
                                     f"{10 * math.log10(1 / mse[worst]):.1f} at frame {worst}, SSIM ")
    # reference | candidate | difference under a 20 px label strip; 100x72 frames are enlarged to 128 px wide panels
    assert out["preview"].shape == (FRAMES, 20 + 92, 3 * 128, 3)
    assert out["plot"].shape[0] == 1 and out["plot"].shape[-1] == 3
    shown = history["outputs"]["compare"]["images"]  # the preview on the node, as core's PreviewImage shows it
    assert len(shown) == FRAMES and all(f["type"] == "temp" for f in shown)
    assert all((clip_dir / "temp" / f["subfolder"] / f["filename"]).is_file() for f in shown)


def test_identical_inputs_are_reported_as_identical(clip_dir):
    out = harness.run_prompt(_prompt(candidate=("frames", 0)))
    assert out["psnr"] == math.inf and out["ssim"] == 1.0 and out["temporal_difference"] == 0.0
    assert out["summary"] == (f"candidate vs reference: identical ({FRAMES} frames): PSNR inf, SSIM 1, temporal "
                              f"difference 0%")


def test_different_frame_counts_are_refused_naming_both_shapes(clip_dir):
    with pytest.raises(RuntimeError, match=r"reference and candidate differ: reference is 6 frames of 100x72 "
                                           r"\(shape \[6, 72, 100, 3\]\), candidate is 3 frames of 100x72"):
        harness.run_prompt(_prompt(candidate=("few", 0)))


def test_summary_is_the_nodes_progress_text_on_a_real_server(tmp_path):
    """A real ComfyUI server (main.py on 127.0.0.1): the summary reaches the browser as ComfyUI's own progress-text
    message (binary event 3: node id + text) addressed to the Video Compare node."""
    from comfy_servers import comfy_servers, progress_texts

    def empty(color):
        return {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 3, "color": color}}

    prompt = {"ref": empty(0x808080), "cand": empty(0x828282),
              "compare": {"class_type": NODE, "inputs": {"reference": ["ref", 0], "candidate": ["cand", 0]}}}

    with comfy_servers(tmp_path / "servers", 1) as (server,):
        texts = progress_texts(server.url, prompt)
    # 0x80 vs 0x82 on every pixel: MSE = (2/255)^2, PSNR = 20 log10(255/2) = 42.1 dB; both videos still
    expected = "candidate vs reference: mean PSNR 42.1 dB, min 42.1 at frame 0, SSIM"
    assert [text for node, text in texts if node == "compare" and text.startswith("Video Compare: ")] and \
        [text for node, text in texts if node == "compare"][-1].startswith(f"Video Compare: {expected}"), texts
