"""Save Motion Vectors / Load Motion Vectors inside ComfyUI: loaded by ComfyUI's custom-node loader and run by its
executor on a real clip (Load Video -> Get Video Components). Encode -> Save writes a .safetensors file listed in
the node's UI output; Load -> Decode of that file gives exactly the frames Encode -> Decode gives; Load's file list,
fingerprint and validation follow LoadImage's; foreign files and a first frame of another size fail with messages.
Round trips are bit for bit in the precision the running ComfyUI's LoadVideo gives (8-bit frames on 0.8.0, float32
on 0.30.0: read off the frames, not the version). Hostile files in the input folder (issue 19): symlink loops, a
header describing frames far larger than the file, thousands of tiny pairs, malformed headers."""
import os
import shutil
import threading

import harness
import pytest
import torch
from safetensors.torch import save_file

FRAMES, H, W = 5, 72, 100


@pytest.fixture()
def folders(comfy_nodes, tmp_path):
    for name in ("in", "out", "temp"):
        (tmp_path / name).mkdir()
    harness.write_clip(tmp_path / "in" / "clip.mp4", frames=FRAMES, height=H, width=W)
    shutil.copy(harness.TEST_DATA / "photos" / "coffee.png", tmp_path / "in" / "coffee.png")
    with harness.comfy_folders(tmp_path / "in", tmp_path / "out", tmp_path / "temp"):
        yield tmp_path


def encode_and_save(residual=True):
    save_inputs = {"motion_vectors": ["3", 0], "filename_prefix": "vcut/mv"}
    if residual:
        save_inputs["residual"] = ["3", 1]
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "VCUTMotionVectorEncode",
              "inputs": {"images": ["2", 0], "method": "fast search", "block_size": "8", "search_range": 8}},
        "4": {"class_type": "VCUTMotionVectorDecode",
              "inputs": {"first_frame": ["2", 0], "motion_vectors": ["3", 0], "residual": ["3", 1],
                         "residual_scale": 1.0, "resize_first_frame": False}},
        "5": {"class_type": "VCUTSaveMotionVectors", "inputs": save_inputs},
        "10": {"class_type": "VCUTTestCapture", "inputs": {"value": ["4", 0], "key": "decoded"}},
        "11": {"class_type": "VCUTTestCapture", "inputs": {"value": ["3", 0], "key": "mv"}},
        "12": {"class_type": "VCUTTestCapture", "inputs": {"value": ["2", 0], "key": "source"}},
    }


def load_and_decode(file, first_frame=("2", 0), scale=1.0):
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "6": {"class_type": "LoadImage", "inputs": {"image": "coffee.png"}},
        "7": {"class_type": "VCUTLoadMotionVectors", "inputs": {"file": file}},
        "8": {"class_type": "VCUTMotionVectorDecode",
              "inputs": {"first_frame": list(first_frame), "motion_vectors": ["7", 0], "residual": ["7", 1],
                         "residual_scale": scale, "resize_first_frame": False}},
        "10": {"class_type": "VCUTTestCapture", "inputs": {"value": ["8", 0], "key": "decoded"}},
        "11": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 0], "key": "mv"}},
        "12": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 2], "key": "preview"}},
        "13": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 1], "key": "residual"}},
    }


def bits(images: torch.Tensor) -> torch.Tensor:
    return images.view(torch.int32)


def test_save_then_load_decodes_to_the_same_frames(folders):
    assert {"VCUTSaveMotionVectors", "VCUTLoadMotionVectors"} <= set(harness.pack_node_ids())
    first, history = harness.execute(encode_and_save())
    listed = history["outputs"]["5"]["motion_vectors"]
    assert listed == [{"filename": "mv_00001_.safetensors", "subfolder": "vcut", "type": "output"}]
    saved = folders / "out" / "vcut" / "mv_00001_.safetensors"
    assert saved.is_file()
    harness.execute(encode_and_save())  # a second run: the counter moves on, the first file stays
    assert (folders / "out" / "vcut" / "mv_00002_.safetensors").is_file()

    load = harness.init_comfy().NODE_CLASS_MAPPINGS["VCUTLoadMotionVectors"]
    assert "motion/mv.safetensors" not in load.INPUT_TYPES()["required"]["file"][1]["options"]
    (folders / "in" / "motion").mkdir()
    shutil.copy(saved, folders / "in" / "motion" / "mv.safetensors")
    assert "motion/mv.safetensors" in load.INPUT_TYPES()["required"]["file"][1]["options"]  # listed once it is there
    second = harness.run_prompt(load_and_decode("motion/mv.safetensors"))
    assert torch.equal(bits(second["decoded"]), bits(first["decoded"]))
    assert torch.equal(bits(second["decoded"]), bits(first["source"]))  # Encode -> Save -> Load -> Decode: exact
    codec = harness.pack_module().codec
    precision = "uint8" if codec.codec_frames(first["source"]).dtype == torch.uint8 else "float32"
    header = codec.storage.read_header(saved)
    assert second["mv"].precision == first["mv"].precision == header["precision"] == precision
    assert header["format_version"] == "2"
    assert second["residual"].dtype == (torch.float64 if precision == "float32" else torch.float32)
    assert torch.equal(second["mv"].vectors, first["mv"].vectors)
    assert (second["mv"].block_size, second["mv"].frame_size, second["mv"].source, second["mv"].search_range) == \
        (8, (H, W), "search:fast", 8)
    assert second["preview"].shape == (FRAMES - 1, H, W, 3)

    # motion only (no residual saved): Load's residual output is zero, so Decode gives the pure warp
    harness.execute(encode_and_save(residual=False))
    shutil.copy(folders / "out" / "vcut" / "mv_00003_.safetensors", folders / "in" / "motion_only.safetensors")
    only = harness.run_prompt(load_and_decode("motion_only.safetensors"))
    warped = only["decoded"]
    assert only["residual"].shape == (0, H, W, 3)  # no full-size zero residual: empty = motion only
    reference = harness.run_prompt(load_and_decode("motion/mv.safetensors", scale=0.0))["decoded"]
    assert torch.equal(warped, reference) and not torch.equal(warped, first["source"])

    fingerprint = load.fingerprint_inputs("motion/mv.safetensors")
    assert fingerprint == load.fingerprint_inputs("motion/mv.safetensors")
    shutil.copy(folders / "out" / "vcut" / "mv_00003_.safetensors", folders / "in" / "motion" / "mv.safetensors")
    assert load.fingerprint_inputs("motion/mv.safetensors") != fingerprint  # replaced file: runs again


def test_foreign_files_and_a_first_frame_of_another_size_fail_clearly(folders):
    harness.execute(encode_and_save())
    shutil.copy(folders / "out" / "vcut" / "mv_00001_.safetensors", folders / "in" / "mv.safetensors")
    save_file({"latent_tensor": torch.zeros(1, 4, 8, 8)}, str(folders / "in" / "latent.safetensors"))
    (folders / "in" / "broken.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(RuntimeError, match="not a vcut motion-vector file"):
        harness.run_prompt(load_and_decode("latent.safetensors"))
    with pytest.raises(RuntimeError, match="not a readable .safetensors file"):
        harness.run_prompt(load_and_decode("broken.safetensors"))
    with pytest.raises(RuntimeError, match="not a .safetensors file inside ComfyUI.s input folder"):
        harness.run_prompt(load_and_decode("../out/vcut/mv_00001_.safetensors"))
    with pytest.raises(RuntimeError, match=r"first_frame is \d+x\d+ but the motion vectors \(loaded from "
                                           r"mv.safetensors\) are for 100x72 frames"):
        harness.run_prompt(load_and_decode("mv.safetensors", first_frame=("6", 0)))
    save = harness.init_comfy().NODE_CLASS_MAPPINGS["VCUTSaveMotionVectors"]
    mv = harness.run_prompt(load_and_decode("mv.safetensors"))["mv"]
    dtype = torch.float64 if mv.precision == "float32" else torch.float32  # the residual IMAGE of its precision
    with pytest.raises(ValueError, match="residual has shape .* one residual per frame pair"):
        save.execute(mv, "vcut/x", residual=torch.full((1, H, W, 3), 0.5, dtype=dtype))
    with pytest.raises(ValueError, match="motion_vectors: expected MOTION_VECTORS"):
        save.execute("vectors", "vcut/x")
    assert sorted(p.name for p in (folders / "out" / "vcut").iterdir()) == ["mv_00001_.safetensors"]


def motion_only_file(path, pairs, height, width, block=4, **metadata):
    """A motion-only motion-vector file (zero vectors) with header entries replaced by `metadata`."""
    storage = harness.pack_module().codec.storage
    vectors = torch.zeros((max(pairs, 0), -(-height // block), -(-width // block), 2), dtype=torch.int16)
    header = {"format": "vcut.motion_vectors", "format_version": "2", "block_size": str(block),
              "frame_height": str(height), "frame_width": str(width), "frames": str(pairs + 1), "source": "x",
              "search_range": "4", "precision": "uint8", "has_residual": "0", "info": "{}",
              "sha256": storage._digest({"vectors": vectors}), **metadata}
    save_file({"vectors": vectors}, str(path), metadata=header)


def load_only(file):
    return {"7": {"class_type": "VCUTLoadMotionVectors", "inputs": {"file": file}},
            "11": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 0], "key": "mv"}},
            "12": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 2], "key": "preview"}},
            "13": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 1], "key": "residual"}}}


def test_symlink_loops_in_the_input_folder_do_not_freeze_the_file_list(folders):
    os.symlink(".", folders / "in" / "loop1")  # froze the server before: os.walk(followlinks=True) never returned
    os.symlink(".", folders / "in" / "loop2")
    motion_only_file(folders / "in" / "mv.safetensors", 2, 8, 8)
    load = harness.init_comfy().NODE_CLASS_MAPPINGS["VCUTLoadMotionVectors"]
    listed = []
    worker = threading.Thread(target=lambda: listed.append(load.INPUT_TYPES()["required"]["file"][1]["options"]),
                              daemon=True)
    worker.start()
    worker.join(30)
    assert listed == [["mv.safetensors"]]


def test_hostile_motion_files_are_refused_with_the_file_named(folders):
    motion_only_file(folders / "in" / "big.safetensors", 3, 12000, 16384, block=16)  # 12 MB, 9 GB to decode
    motion_only_file(folders / "in" / "list_info.safetensors", 2, 8, 8, info="[1, 2]")
    motion_only_file(folders / "in" / "deep_info.safetensors", 2, 8, 8, info="[" * 100000 + "]" * 100000)
    motion_only_file(folders / "in" / "zero_pairs.safetensors", 0, 8, 8)
    motion_only_file(folders / "in" / "zero_height.safetensors", 2, 0, 8)
    for name, message in (("big", r"describes 4 frames of 16384x12000, which would need \d+ MiB to load and "
                                  r"9000 MiB to decode; motion files are limited to 4096 MiB"),
                          ("list_info", "the header's 'info' is a JSON list"),
                          ("deep_info", "the header's 'info' is not valid JSON .nested too deeply"),
                          ("zero_pairs", "holds 0 frame pairs"),
                          ("zero_height", "frame size 8x0 is not 1..16384 pixels")):
        with pytest.raises(RuntimeError, match=f"file: .*{name}.safetensors: .*{message}"):
            harness.run_prompt(load_only(f"{name}.safetensors"))


def test_thousands_of_tiny_pairs_write_a_capped_preview(folders):
    motion_only_file(folders / "in" / "many.safetensors", 3000, 8, 8)  # wrote 3000 preview PNGs before
    out = harness.run_prompt(load_only("many.safetensors"))
    cap = harness.pack_module().codec.visualize.PREVIEW_MAX_FRAMES
    assert out["mv"].num_frames == 3001 and out["preview"].shape == (cap, 8, 8, 3)
    assert out["residual"].shape == (0, 8, 8, 3)
    pngs = [name for _, _, files in os.walk(folders / "temp") for name in files if name.endswith(".png")]
    assert 0 < len(pngs) <= cap
    load = harness.init_comfy().NODE_CLASS_MAPPINGS["VCUTLoadMotionVectors"]
    assert f"At most the first {cap} frame pairs" in str(load.define_schema().outputs[2].tooltip)
