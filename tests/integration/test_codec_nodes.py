"""Motion Vector Encode / Decode inside ComfyUI: loaded by ComfyUI's custom-node loader, run by its executor on a
real clip's frames as ComfyUI's own Load Video -> Get Video Components gives them, MOTION_VECTORS flowing between
the nodes, exact round trips, x264 vectors, motion transfer onto a LoadImage photo, and bad inputs.

The frames' precision is read off what the running ComfyUI's LoadVideo returns, never off its version: 8-bit
frames (0.8.0 decodes to rgb24) take the uint8 path, float32 frames off the 8-bit grid (0.30.0 decodes to
gbrpf32le) the float32 one; both must come back bit for bit."""
import shutil

import harness
import pytest
import torch

TEST_DATA = harness.TEST_DATA
FRAMES, H, W = 6, 72, 100  # a short crop: not divisible by 16 (padding path), small for 2 cores


@pytest.fixture()
def input_dir(comfy_nodes, tmp_path):
    """ComfyUI's input folder pointed at a temp dir holding a short crop of a shared clip and a photo."""
    harness.write_clip(tmp_path / "clip.mp4", frames=FRAMES, height=H, width=W)
    shutil.copy(TEST_DATA / "photos" / "coffee.png", tmp_path / "coffee.png")
    with harness.comfy_folders(input_dir=tmp_path):
        yield tmp_path


def video_prompt(method="fast search", block="16", extra=None):
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "VCUTMotionVectorEncode",
              "inputs": {"images": ["2", 0], "method": method, "block_size": block, "search_range": 8}},
        "4": {"class_type": "VCUTMotionVectorDecode",
              "inputs": {"first_frame": ["2", 0], "motion_vectors": ["3", 0], "residual": ["3", 1],
                         "residual_scale": 1.0, "resize_first_frame": False}},
        "10": {"class_type": "VCUTTestCapture", "inputs": {"value": ["2", 0], "key": "source"}},
        "11": {"class_type": "VCUTTestCapture", "inputs": {"value": ["3", 0], "key": "mv"}},
        "12": {"class_type": "VCUTTestCapture", "inputs": {"value": ["3", 2], "key": "preview"}},
        "13": {"class_type": "VCUTTestCapture", "inputs": {"value": ["4", 0], "key": "decoded"}},
        "14": {"class_type": "VCUTTestCapture", "inputs": {"value": ["3", 1], "key": "residual"}},
    }
    prompt.update(extra or {})
    return prompt


def precision_of(images: torch.Tensor) -> str:
    """The precision the codec must choose for these frames: uint8 iff every value is k / 255 exactly (float32)."""
    on_grid = torch.equal(torch.round(images * 255) / 255, images) and not torch.signbit(images).any()
    return "uint8" if on_grid else "float32"


def test_nodes_are_registered_by_comfyui_loader(comfy_nodes):
    ids = harness.pack_node_ids()
    assert "VCUTMotionVectorEncode" in ids and "VCUTMotionVectorDecode" in ids
    schema = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTMotionVectorEncode"].INPUT_TYPES()
    assert all("tooltip" in spec[1] for spec in schema["required"].values())


@pytest.mark.parametrize("method,block", [("fast search", "16"), ("exhaustive search", "8"), ("x264 medium", "4")])
def test_encode_decode_round_trip_in_the_executor(input_dir, method, block):
    out = harness.run_prompt(video_prompt(method, block))
    source, decoded, mv = out["source"], out["decoded"], out["mv"]
    assert source.shape == (FRAMES, H, W, 3)
    assert decoded.dtype == source.dtype == torch.float32
    assert torch.equal(decoded.view(torch.int32), source.view(torch.int32))  # bit-exact IMAGE round trip
    assert mv.precision == precision_of(source)
    assert out["residual"].dtype == (torch.float64 if mv.precision == "float32" else torch.float32)
    assert type(mv).__name__ == "MotionVectors" and mv.frame_size == (H, W) and mv.block_size == int(block)
    assert mv.vectors.shape[0] == FRAMES - 1
    assert mv.source == {"fast search": "search:fast", "exhaustive search": "search:exhaustive",
                         "x264 medium": "x264:medium"}[method]
    assert out["preview"].shape == (FRAMES - 1, H, W, 3) and out["residual"].shape == (FRAMES - 1, H, W, 3)
    assert 0.0 <= out["residual"].min() and out["residual"].max() <= 1.0


def test_motion_transfer_onto_a_loaded_photo(input_dir):
    extra = {
        "5": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "4": {"class_type": "VCUTMotionVectorDecode",
              "inputs": {"first_frame": ["5", 0], "motion_vectors": ["3", 0], "residual_scale": 0.0,
                         "resize_first_frame": True}},
    }
    out = harness.run_prompt(video_prompt(extra=extra))
    moved, mv = out["decoded"], out["mv"]
    assert moved.shape == (FRAMES, H, W, 3)
    pack = harness.pack_module()
    first = pack.codec.image_to_uint8(moved[0])
    expect = first
    for i in range(FRAMES - 1):  # each frame is the previous one moved by that pair's vectors
        expect = pack.codec.predict(expect, mv.vectors[i], mv.block_size)
        assert torch.equal(pack.codec.image_to_uint8(moved[i + 1]), expect)


def test_size_mismatch_without_resize_is_an_error(input_dir):
    extra = {
        "5": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "4": {"class_type": "VCUTMotionVectorDecode",
              "inputs": {"first_frame": ["5", 0], "motion_vectors": ["3", 0], "residual_scale": 0.0,
                         "resize_first_frame": False}},
    }
    with pytest.raises(RuntimeError, match="resize_first_frame"):
        harness.run_prompt(video_prompt(extra=extra))


def test_bad_inputs_in_node_execute(comfy_nodes):
    enc = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTMotionVectorEncode"]
    dec = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTMotionVectorDecode"]
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, 40, 48, 3), generator=g).float() / 255
    with pytest.raises(ValueError, match="at least 2"):
        enc.execute(video[:1], "fast search", "16", 8)
    with pytest.raises(ValueError, match="NaN"):
        bad = video.clone()
        bad[1, 3, 3, 0] = float("nan")
        enc.execute(bad, "fast search", "16", 8)
    with pytest.raises(ValueError, match=r"larger than the frame \(8x8\): choose 4 or 8 "):
        enc.execute(video[:, :8, :8], "fast search", "16", 8)
    for block in ("4", "8", "16"):  # frames below the smallest block size (4): the valid frame size is named
        with pytest.raises(ValueError, match=r"\(3x3\): every block size \(4, 8, 16\) .* at least 4x4 pixels"):
            enc.execute(video[:, :3, :3], "fast search", block, 8)
    with pytest.raises(ValueError, match="search_range"):
        enc.execute(video, "fast search", "16", 0)
    with pytest.raises(ValueError, match="mixed frame sizes"):
        enc.execute([video[:1], video[1:, :32]], "fast search", "16", 8)
    before = video.clone()
    mv, residual, _ = enc.execute(video, "fast search", "8", 8).result
    assert torch.equal(video, before)  # inputs untouched
    assert torch.equal(dec.execute(video, mv, 1.0, False, residual=residual).result[0], video)
    motion_only = dec.execute(video, mv, 0.0, False).result[0]  # an empty residual (Load's, motion only) = none
    assert torch.equal(dec.execute(video, mv, 1.0, False, residual=residual[:0]).result[0], motion_only)
    with pytest.raises(ValueError, match="one residual per frame"):
        dec.execute(video, mv, 1.0, False, residual=residual[:1])
    with pytest.raises(ValueError, match="MOTION_VECTORS"):
        dec.execute(video, "not vectors", 1.0, False)
    with pytest.raises(ValueError, match="vectors are for"):
        dec.execute(video[:, :32], mv, 0.0, False)


def test_float_frames_are_exact_and_residuals_of_the_other_precision_are_refused(comfy_nodes):
    enc = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTMotionVectorEncode"]
    dec = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTMotionVectorDecode"]
    save = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTSaveMotionVectors"]
    frames = harness.real_frames(4, size=40)  # bilinear resize: float32 off the 8-bit grid, as float nodes give
    frames[0, 0, 0] = torch.tensor([0.0, -0.0, 1.0])
    assert precision_of(frames) == "float32"
    mv, residual, _ = enc.execute(frames, "fast search", "8", 8).result
    assert mv.precision == "float32" and residual.dtype == torch.float64
    out = dec.execute(frames, mv, 1.0, False, residual=residual).result[0]
    assert torch.equal(out.view(torch.int32), frames.view(torch.int32))
    eight = (torch.round(frames * 255) / 255).abs()  # the 8-bit grid (abs: -0.0 is not on it)
    mv8, residual8, _ = enc.execute(eight, "x264 medium", "4", 8).result
    assert mv8.precision == "uint8" and residual8.dtype == torch.float32
    assert torch.equal(dec.execute(eight, mv8, 1.0, False, residual=residual8).result[0], eight)
    with pytest.raises(ValueError, match=r"residual: a uint8-precision \(float32 IMAGE\) residual, but the motion "
                                         r"vectors are float32-precision .* take a float32-precision \(float64 IMAGE\)"):
        dec.execute(frames, mv, 1.0, False, residual=residual8)
    with pytest.raises(ValueError, match=r"residual: a float32-precision \(float64 IMAGE\) residual, but the motion "
                                         r"vectors are uint8-precision"):
        save.execute(mv8, "vcut/x", residual=residual)
    with pytest.raises(ValueError, match="float64 residual IMAGE must hold"):
        dec.execute(frames, mv, 1.0, False, residual=residual * 0.999)  # changed on the way
