"""Salient Mask and Video Loop Metrics inside ComfyUI: loaded by ComfyUI's custom-node loader and run by its
executor (LoadImage -> Salient Mask; RepeatImageBatch -> Video Loop Metrics), with a real ComfyUI ClipVisionModel
(tiny config, seeded random weights) for the CLIP path, and bad inputs refused through the executor."""
import json
import shutil

import harness
import numpy as np
import pytest
import torch

TEST_DATA = harness.TEST_DATA


@pytest.fixture()
def input_dir(comfy_nodes, tmp_path):
    import folder_paths
    old = folder_paths.get_input_directory()
    shutil.copy(TEST_DATA / "photos" / "coffee.png", tmp_path / "coffee.png")
    folder_paths.set_input_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_input_directory(old)


def _capture(node, slot, key):
    return {"class_type": "VCUTTestCapture", "inputs": {"value": [node, slot], "key": key}}


def test_nodes_are_registered(comfy_nodes):
    ids = harness.pack_node_ids()
    assert "VCUTSalientMask" in ids and "VCUTVideoLoopMetrics" in ids


def test_salient_mask_on_a_loaded_photo(input_dir):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "area", "width": 300,
                                                       "height": 200, "crop": "disabled"}},
        "3": {"class_type": "VCUTSalientMask", "inputs": {"images": ["2", 0], "threshold": 0.0, "refine": True,
                                                           "min_area": 0.01, "dilate": 0, "feather": 0.0,
                                                           "temporal_smoothing": 0.5}},
        "10": _capture("3", 0, "mask"), "11": _capture("3", 1, "preview"), "12": _capture("2", 0, "image"),
    }
    out = harness.run_prompt(prompt)
    mask, preview = out["mask"], out["preview"]
    assert mask.shape == (1, 200, 300) and preview.shape == (1, 200, 300, 3)
    m = mask[0].numpy() >= 0.5
    assert m[30:135, 105:190].mean() >= 0.9  # the cup (coffee.png scaled by 1/2)
    assert m[:30, :60].mean() <= 0.05 and m[:50, 240:].mean() <= 0.05  # wood in the top corners


def _metrics_prompt(repeat=4, clip=False):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "area", "width": 96,
                                                       "height": 64, "crop": "disabled"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": repeat}},
        "4": {"class_type": "VCUTVideoLoopMetrics", "inputs": {"frames": ["3", 0], "image": ["1", 0]}},
        "10": _capture("4", 0, "report"), "11": _capture("4", 1, "plot"), "12": _capture("4", 2, "loop_c"),
        "13": _capture("4", 3, "motion"),
    }
    return prompt


def test_video_loop_metrics_through_the_executor(input_dir):
    out = harness.run_prompt(_metrics_prompt())
    assert out["loop_c"] == pytest.approx(1.0, abs=1e-9) and out["motion"] == pytest.approx(0.0, abs=1e-5)
    report = out["report"]
    assert "pixel-space" in report and "Loop-C (pixel): 1.0000" in report
    assert "resized" in report  # the 600x400 input image was resized to the frames' 96x64
    assert out["plot"].shape == (1, 384, 768, 3)


def test_single_frame_batch_is_refused_by_the_executor(input_dir):
    with pytest.raises(RuntimeError, match="at least 2"):
        harness.run_prompt(_metrics_prompt(repeat=1))


def test_clip_vision_embeddings_from_a_real_comfy_clip_vision_model(comfy_nodes, tmp_path):
    import comfy.clip_vision
    config = {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 32,
              "image_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
              "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2,
              "num_channels": 3, "num_hidden_layers": 2, "patch_size": 16, "projection_dim": 16,
              "torch_dtype": "float32"}
    (tmp_path / "cv.json").write_text(json.dumps(config))
    cv = comfy.clip_vision.ClipVisionModel(str(tmp_path / "cv.json"))
    g = torch.Generator().manual_seed(0)
    cv.load_sd({k: torch.randn(v.shape, generator=g) * 0.2 for k, v in cv.get_sd().items()})
    node = next(n for n in harness.pack_module().nodes.ALL_NODES if n.__name__ == "VCUTVideoLoopMetrics")
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.random((1, 48, 48, 3), dtype=np.float32))
    other = torch.from_numpy(rng.random((1, 48, 48, 3), dtype=np.float32))
    loop = torch.cat([base, other, base])
    out = node.execute(loop, base, cv)
    report, plot, loop_c, motion = out.result
    assert "Loop-C (clip): 1.0000" in report and "CLIP-I (clip)" in report
    assert loop_c == pytest.approx(1.0, abs=1e-5) and motion > 0.5
    emb = cv.encode_image(torch.cat([base, other]))["image_embeds"]
    drift = node.execute(torch.cat([base, base, other]), base, cv).result
    cos = torch.nn.functional.cosine_similarity(emb[:1].double(), emb[1:].double()).item()
    assert drift[2] == pytest.approx(cos, abs=1e-5)


def test_salient_mask_refuses_nan_and_empty(comfy_nodes):
    node = next(n for n in harness.pack_module().nodes.ALL_NODES if n.__name__ == "VCUTSalientMask")
    bad = torch.rand(1, 32, 32, 3)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        node.execute(bad, 0.0, True, 0.01, 0, 0.0, 0.5)
    with pytest.raises(ValueError, match="empty"):
        node.execute(torch.zeros(0, 32, 32, 3), 0.0, True, 0.01, 0, 0.0, 0.5)


@pytest.mark.parametrize("frames_shape, image_shape", [((3, 1, 1000, 3), (1, 64, 96, 3)),
                                                       ((3, 1000, 1, 3), (1, 1, 1000, 3)),
                                                       ((2, 1, 1, 3), (1, 5, 5, 3))])
def test_video_loop_metrics_on_extreme_aspect_ratios(comfy_nodes, frames_shape, image_shape):
    """A 1 px tall or wide video, or an input image whose centre crop would round to 0 px: defined metrics."""
    node = next(n for n in harness.pack_module().nodes.ALL_NODES if n.__name__ == "VCUTVideoLoopMetrics")
    g = torch.Generator().manual_seed(0)
    report, plot, loop_c, motion = node.execute(torch.rand(frames_shape, generator=g),
                                                torch.rand(image_shape, generator=g)).result
    assert np.isfinite(loop_c) and np.isfinite(motion) and "resized" in report
    assert plot.shape == (1, 384, 768, 3)


def test_video_loop_metrics_names_nan_frames_and_a_one_frame_video(comfy_nodes):
    node = next(n for n in harness.pack_module().nodes.ALL_NODES if n.__name__ == "VCUTVideoLoopMetrics")
    frames = torch.rand(4, 32, 48, 3, generator=torch.Generator().manual_seed(1))
    frames[3, 2, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="frames: frame 3 contains NaN"):
        node.execute(frames, frames[:1])
    with pytest.raises(ValueError, match="image: frame 0 contains NaN"):
        node.execute(frames[:3], frames[3:])
    with pytest.raises(ValueError, match="frames: 1 frame.*at least 2"):
        node.execute(frames[:1], frames[:1])
