"""Motion Vector Encode / Decode inside ComfyUI: loaded by ComfyUI's custom-node loader, run by its executor on a
real clip's frames as ComfyUI's own Load Video -> Get Video Components gives them, MOTION_VECTORS flowing between
the nodes, exact round trips, x264 vectors, motion transfer onto a LoadImage photo, and bad inputs."""
import shutil

import av
import numpy as np
import pytest
import torch

import harness

SHARED_DATA = harness.PACK_ROOT.parent / "shared" / "data"
FRAMES, H, W = 6, 72, 100  # a short crop: not divisible by 16 (padding path), small for 2 cores


@pytest.fixture()
def input_dir(comfy_nodes, tmp_path):
    """ComfyUI's input folder pointed at a temp dir holding a short crop of a shared clip and a photo."""
    import folder_paths
    old = folder_paths.get_input_directory()
    with av.open(str(SHARED_DATA / "video" / "car-detection.mp4")) as src, \
            av.open(str(tmp_path / "clip.mp4"), "w") as dst:
        stream = dst.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i < 120:
                continue
            crop = np.ascontiguousarray(frame.to_ndarray(format="rgb24")[200:200 + H, 300:300 + W])
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                dst.mux(packet)
            if i == 120 + FRAMES - 1:
                break
        for packet in stream.encode():
            dst.mux(packet)
    shutil.copy(SHARED_DATA / "photos" / "coffee.png", tmp_path / "coffee.png")
    folder_paths.set_input_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_input_directory(old)


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
    assert torch.equal(decoded, source)  # bit-exact IMAGE round trip through ComfyUI
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
    with pytest.raises(ValueError, match="larger than the frame"):
        enc.execute(video[:, :8, :8], "fast search", "16", 8)
    with pytest.raises(ValueError, match="search_range"):
        enc.execute(video, "fast search", "16", 0)
    with pytest.raises(ValueError, match="mixed frame sizes"):
        enc.execute([video[:1], video[1:, :32]], "fast search", "16", 8)
    before = video.clone()
    mv, residual, _ = enc.execute(video, "fast search", "8", 8).result
    assert torch.equal(video, before)  # inputs untouched
    assert torch.equal(dec.execute(video, mv, 1.0, False, residual=residual).result[0], video)
    with pytest.raises(ValueError, match="non-empty"):
        dec.execute(video, mv, 1.0, False, residual=residual[:0])
    with pytest.raises(ValueError, match="one residual per frame"):
        dec.execute(video, mv, 1.0, False, residual=residual[:1])
    with pytest.raises(ValueError, match="MOTION_VECTORS"):
        dec.execute(video, "not vectors", 1.0, False)
    with pytest.raises(ValueError, match="vectors are for"):
        dec.execute(video[:, :32], mv, 0.0, False)


# ---- the workflows: they resolve against ComfyUI's node definitions and run in its executor (tiny models) ----

WORKFLOWS = ["codec_motion_visualisation.json", "codec_motion_transfer.json"]


class ImageFromBatchStandIn:
    """ComfyUI's ImageFromBatch semantics (batch_index, length), used only where the harness could not import
    comfy_extras/nodes_images.py."""
    FUNCTION = "take"
    RETURN_TYPES = ("IMAGE",)
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "batch_index": ("INT", {"default": 0}),
                             "length": ("INT", {"default": 1})}}

    def take(self, image, batch_index, length):
        return (image[batch_index:batch_index + length].clone(),)


def widget_names(nodes_module, node_type):
    """Widget inputs in the order the UI stores widgets_values (a seed widget adds its control value)."""
    names = []
    info = nodes_module.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in info.get(section, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                names.append(name)
                if opts.get("control_after_generate") or (spec[0] == "INT" and name == "seed"):
                    names.append(None)
    return names


def ui_to_api(workflow, nodes_module, overrides, substitute):
    """UI workflow -> API prompt: links become [node, slot], widgets_values named inputs, Save* nodes Capture."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] == "Note":
            continue
        node_type = substitute.get(node["type"], node["type"])
        inputs = {i["name"]: [str(links[i["link"]][1]), links[i["link"]][2]]
                  for i in node["inputs"] if i.get("link") is not None}
        if not node["type"].startswith("Save"):
            names = widget_names(nodes_module, node_type)
            for name, value in zip(names, node["widgets_values"]):
                if name is not None:
                    inputs.setdefault(name, value)
        inputs.update(overrides.get(node["type"], {}))
        if node["type"].startswith("Save"):
            prompt[str(node["id"])] = {"class_type": "VCUTTestCapture",
                                       "inputs": {"value": inputs["images"], "key": f"save{node['id']}"}}
        else:
            prompt[str(node["id"])] = {"class_type": node_type, "inputs": inputs}
    return prompt


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_links_match_comfyui_node_definitions(comfy_nodes, name):
    import json
    workflow = json.loads((harness.PACK_ROOT / "workflows" / name).read_text())
    assert workflow["version"] == 0.4 and any(n["type"] == "Note" for n in workflow["nodes"])
    by_id = {n["id"]: n for n in workflow["nodes"]}
    known = set(comfy_nodes.NODE_CLASS_MAPPINGS) | {"Note", "ImageFromBatch", "SaveAnimatedWEBP"}  # see stand-in
    for node in workflow["nodes"]:
        assert node["type"] in known, node["type"]
    for link_id, src, src_slot, dst, dst_slot, link_type in workflow["links"]:
        assert by_id[src]["outputs"][src_slot]["type"] == link_type == by_id[dst]["inputs"][dst_slot]["type"]
        assert link_id in by_id[src]["outputs"][src_slot]["links"] and by_id[dst]["inputs"][dst_slot]["link"] == link_id
        cls = comfy_nodes.NODE_CLASS_MAPPINGS.get(by_id[dst]["type"])
        if cls is not None:  # the input exists on the real node with that type
            spec = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
            assert spec[by_id[dst]["inputs"][dst_slot]["name"]][0] == link_type


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_executes(comfy_nodes, input_dir, name):
    import json
    from test_loop_nodes import TinyCheckpoint  # the tiny SVD + CLIP vision + VAE stand-in of the loop tests
    TinyCheckpoint.TMP = str(input_dir)
    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTCodecTestCheckpoint"] = TinyCheckpoint
    substitute = {"ImageOnlyCheckpointLoader": "VCUTCodecTestCheckpoint"}
    if "ImageFromBatch" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        comfy_nodes.NODE_CLASS_MAPPINGS["VCUTCodecTestImageFromBatch"] = ImageFromBatchStandIn
        substitute["ImageFromBatch"] = "VCUTCodecTestImageFromBatch"
    workflow = json.loads((harness.PACK_ROOT / "workflows" / name).read_text())
    small = {"LoadVideo": {"file": "clip.mp4"}, "LoadImage": {"image": "coffee.png"},
             "ImageScale": {"width": 64, "height": 64}, "ImageFromBatch": {"length": 4},
             "SVD_img2vid_Conditioning": {"width": 64, "height": 64, "video_frames": 4},
             "KSampler": {"steps": 2}}
    out = harness.run_prompt(ui_to_api(workflow, comfy_nodes, small, substitute))
    saved = {k: v for k, v in out.items() if k.startswith("save")}
    assert saved and all(v.ndim == 4 and v.shape[-1] == 3 and torch.isfinite(v).all() for v in saved.values())
    if name == "codec_motion_visualisation.json":
        titles = {f"save{n['id']}": n.get("title", "") for n in workflow["nodes"]}
        decoded = next(v for k, v in saved.items() if titles[k].startswith("Decoded"))
        assert decoded.shape == (FRAMES, H, W, 3)
        preview = next(v for k, v in saved.items() if titles[k].startswith("Motion"))
        assert preview.shape == (FRAMES - 1, H, W, 3)
    else:
        assert all(v.shape == (4, 64, 64, 3) for v in saved.values())
