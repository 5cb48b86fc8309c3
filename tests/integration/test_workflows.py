"""Every example workflow in workflows/ resolves against ComfyUI's node definitions and runs end to end in ComfyUI's
executor: converted by the pack's own UI -> API converter (runner/convert.py, the frontend's rules), the checkpoint
loader swapped for the tiny random-weight SVD / CLIP vision / VAE, the REAL LoadImage / LoadVideo reading tests/data
files from a temp input folder, and the REAL save nodes writing into a temp output folder."""

import json

import av
import harness
import pytest
import torch
from PIL import Image

WORKFLOWS = sorted(p.name for p in (harness.PACK_ROOT / "workflows").glob("*.json"))
CURRENT = {"codec_motion_transfer.json", "codec_motion_visualisation.json", "codec_motion_save.json",
           "codec_motion_load_transfer.json", "loop_first_frame_anchored.json",
           "loop_generate_alss_refine.json", "loop_salient_still_background.json", "loop_seamless.json",
           "svd_vcut_img2vid.json", "svd_fast_deepcache.json", "video_extend_3_segments.json",
           "keyframe_interpolation.json", "keyframes_0_12_24.json", "svd_speed_vs_quality.json"}
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
CLIP_FRAMES = 6  # reference.mp4 written into the input folder

# CPU-sized overrides by class_type (the tiny VAE is 8x down: 32 x 32 pixels -> 4 x 4 latents).
SMALL = {"SVD_img2vid_Conditioning": {"width": 32, "height": 32, "video_frames": 3},
         "KSampler": {"steps": 2},
         "ImageScale": {"width": 32, "height": 32},
         "ImageFromBatch": {"length": 4},
         "VCUTALSSLoopClip": {"forward_frames": 3, "stride": 2},
         "VCUTVideoExtend": {"frames": 4}}
PER_WORKFLOW = {"loop_seamless.json": {"SVD_img2vid_Conditioning": {"video_frames": 5}},
                "loop_salient_still_background.json": {"SVD_img2vid_Conditioning": {"video_frames": 5}},
                "loop_generate_alss_refine.json": {"SVD_img2vid_Conditioning": {"video_frames": 5}},
                "codec_motion_transfer.json": {"SVD_img2vid_Conditioning": {"video_frames": 4}},
                "video_extend_3_segments.json": {"SVD_img2vid_Conditioning": {"video_frames": 4}},
                "keyframes_0_12_24.json": {"SVD_img2vid_Conditioning": {"video_frames": 25}}}
# Frames each file-writing node must write, by filename_prefix, at the sizes above.
EXPECTED_FRAMES = {
    "video/vcut_svd": 3, "video/vcut_svd_fast": 3, "video/vcut_speed_vs_quality": 3, "vcut_first_frame": 3,
    "vcut_seamless_loop": 4, "vcut_salient_loop": 4,  # 5-frame loops saved without the closing frame
    "vcut_generated": 5, "vcut_alss_loop": 4,  # ALSS with f=3, s=2 on 5 frames: 0,2,4,2,(0 dropped)
    "vcut_extended": 8,  # 3 segments of 4 frames, overlap 2: 4 + 2 + 2
    "vcut_interpolation": 3, "vcut_keyframes": 25,
    "vcut/motion_preview": CLIP_FRAMES - 1, "vcut/motion_residual": CLIP_FRAMES - 1,
    "vcut/motion_reconstruction": CLIP_FRAMES,
    "vcut/motion_transfer": 4, "vcut/motion_transfer_rough": 4,
    "vcut/motion_preview_loaded": CLIP_FRAMES - 1, "vcut/motion_transfer_loaded": CLIP_FRAMES,
}
MOTION_FILE = "motion_vectors.safetensors"  # what codec_motion_load_transfer.json loads, made from reference.mp4
FILE_NODES = {"SaveAnimatedWEBP", "SaveVideo", "SaveImage"}


def overrides_for(name):
    merged = {k: dict(v) for k, v in SMALL.items()}
    for k, v in PER_WORKFLOW.get(name, {}).items():
        merged.setdefault(k, {}).update(v)
    return merged


def test_the_workflow_set_is_complete():
    assert WORKFLOWS and CURRENT <= set(WORKFLOWS)


# ---- UI format: the file as the frontend loads it ----

def spec_of(cls):
    types = cls.INPUT_TYPES()
    return {**(types.get("required") or {}), **(types.get("optional") or {})}


def type_ok(declared, link_type):
    if isinstance(declared, (list, tuple)):
        declared = "COMBO"
    return str(declared) in ("*", link_type) or link_type in str(declared).split(",")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_ui_format(comfy_nodes, name):
    from vcut.runner.convert import CONTROL, widget_defaults, widget_slots
    workflow = harness.load_workflow(name)
    mapping = comfy_nodes.NODE_CLASS_MAPPINGS
    assert workflow.get("version") == 0.4 and workflow["nodes"]
    assert workflow.get("groups"), f"{name}: no groups"
    assert any(n["type"] in ("Note", "MarkdownNote") and n["widgets_values"][0].strip() for n in workflow["nodes"])
    by_id = {n["id"]: n for n in workflow["nodes"]}
    assert len(by_id) == len(workflow["nodes"]) and max(by_id) <= workflow["last_node_id"]
    for node in workflow["nodes"]:
        assert node["type"] in VIRTUAL or node["type"] in mapping, f"{name}: {node['type']} is not registered"
        if node["type"] in VIRTUAL:
            continue
        cls = mapping[node["type"]]
        slots = widget_slots(cls.INPUT_TYPES(), node.get("widgets_values", []))
        # The workflows are saved with ComfyUI 0.8.0; a newer ComfyUI's node may have more widgets (0.30.0's
        # CreateVideo: bit_depth), which the converter fills with their defaults: each such widget of this
        # ComfyUI's node must have one. More values than this node has widgets is a workflow it cannot run.
        assert len(node.get("widgets_values", [])) <= len(slots), (name, node["id"], node["type"], slots)
        defaults = widget_defaults(cls.INPUT_TYPES())
        for slot in slots[len(node.get("widgets_values", [])):]:
            assert slot is CONTROL or slot in defaults, (name, node["id"], node["type"], slot)
        spec = spec_of(cls)
        for inp in node.get("inputs", []):  # every input exists on the real node; unlinked ones are optional/widgets
            assert inp["name"] in spec, (name, node["id"], inp["name"])
            if inp.get("link") is None and inp["name"] not in [s for s in slots if s is not CONTROL]:
                assert inp["name"] in (cls.INPUT_TYPES().get("optional") or {}), (name, node["id"], inp["name"])
        returns = list(cls.RETURN_TYPES)
        for i, out in enumerate(node.get("outputs", [])):
            assert str(returns[i]) == out["type"], (name, node["id"], i, returns[i], out["type"])
    assert max(link[0] for link in workflow["links"]) <= workflow["last_link_id"]
    for link_id, src, src_slot, dst, dst_slot, link_type in workflow["links"]:
        source, target = by_id[src], by_id[dst]
        assert source["outputs"][src_slot]["type"] == link_type == target["inputs"][dst_slot]["type"]
        assert link_id in source["outputs"][src_slot]["links"] and target["inputs"][dst_slot]["link"] == link_id
        if target["type"] not in VIRTUAL:
            declared = spec_of(mapping[target["type"]])[target["inputs"][dst_slot]["name"]][0]
            assert type_ok(declared, link_type), (name, link_id, declared, link_type)
    for node in workflow["nodes"]:  # every link a node lists exists
        for inp in node.get("inputs", []):
            assert inp.get("link") is None or any(link[0] == inp["link"] for link in workflow["links"])


# ---- end to end in ComfyUI's executor ----

@pytest.fixture()
def folders(comfy_nodes, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "temp").mkdir()
    harness.write_inputs(tmp_path / "in", clip_frames=CLIP_FRAMES)
    codec = harness.pack_module().codec  # the file Save Motion Vectors writes for reference.mp4
    frames = torch.from_numpy(harness.read_frames(tmp_path / "in" / "reference.mp4", CLIP_FRAMES))
    codec.save_motion_vectors(tmp_path / "in" / MOTION_FILE, *codec.encode(frames, 16, 8))
    with harness.comfy_folders(tmp_path / "in", tmp_path / "out", tmp_path / "temp"):
        yield tmp_path


def frames_in(path, fps):
    """Frames a written file holds. libwebp merges identical consecutive frames into one longer frame (and a clip
    of identical frames into a still image, duration 0: returned as None), so an animated WEBP's count is its total
    duration over SaveAnimatedWEBP's per-frame duration."""
    if path.suffix == ".webp":
        with Image.open(path) as image:
            total = 0
            for i in range(image.n_frames):
                image.seek(i)
                image.load()
                total += image.info.get("duration", 0)
            per_frame = int(1000.0 / fps)
            if total == 0 and image.n_frames == 1:
                return None, image.size
            assert total % per_frame == 0, (path, total, per_frame)
            return total // per_frame, image.size
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
        return len(frames), (frames[0].width, frames[0].height)


def tapped(prompt):
    """Capture nodes on every input of every output node, so the tensors that reach them can be checked."""
    extra = {}
    for node_id, entry in prompt.items():
        if entry["class_type"] in FILE_NODES | {"PreviewImage"}:
            for input_name, value in entry["inputs"].items():
                if isinstance(value, list):
                    extra[f"tap{node_id}{input_name}"] = {"class_type": "VCUTTestCapture",
                                                          "inputs": {"value": value, "key": f"{node_id}"}}
    return {**prompt, **extra}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_executes_end_to_end(comfy_nodes, folders, name):
    workflow = harness.load_workflow(name)
    prompt = harness.workflow_prompt(workflow, overrides_for(name))
    assert not any(e["class_type"] == "ImageOnlyCheckpointLoader" for e in prompt.values())
    captured, history = harness.execute(tapped(prompt))
    outputs = history["outputs"]
    for node_id, entry in prompt.items():
        if entry["class_type"] not in FILE_NODES | {"PreviewImage"}:
            continue
        value = captured[node_id]
        images = value.get_components().images if hasattr(value, "get_components") else value
        assert images.ndim == 4 and images.shape[-1] == 3 and torch.isfinite(images).all(), (name, node_id)
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
        if entry["class_type"] == "PreviewImage":
            assert outputs[node_id]["images"] and outputs[node_id]["images"][0]["type"] == "temp"
            continue
        prefix = entry["inputs"]["filename_prefix"]
        files = [folders / "out" / f["subfolder"] / f["filename"] for f in outputs[node_id]["images"]]
        assert files and all(f.is_file() and f.stat().st_size > 0 for f in files), (name, node_id, files)
        count, size = frames_in(files[0], entry["inputs"].get("fps", 1))
        assert images.shape[0] == EXPECTED_FRAMES[prefix], (name, prefix, images.shape)
        if count is None:  # a still WEBP: only when every frame is the same 8-bit image, as the save node makes it
            pixels = (images * 255).clamp(0, 255).to(torch.uint8)  # np.clip(255 * i, 0, 255).astype(uint8): truncated
            assert all(torch.equal(pixels[0], p) for p in pixels), (name, prefix)
        else:
            assert count == images.shape[0], (name, prefix, count, images.shape)
        assert size == (images.shape[2], images.shape[1])
    for node_id, entry in prompt.items():  # Save Motion Vectors: a file that loads back with every frame pair
        if entry["class_type"] == "VCUTSaveMotionVectors":
            saved = outputs[node_id]["motion_vectors"][0]
            motion, residual, _ = harness.pack_module().codec.load_motion_vectors(
                folders / "out" / saved["subfolder"] / saved["filename"])
            assert motion.num_frames == CLIP_FRAMES and residual.shape[0] == CLIP_FRAMES - 1, name
    if any(e["class_type"] == "VCUTVideoLoopMetrics" for e in prompt.values()):
        texts = [t for o in outputs.values() for t in o.get("text", [])]
        assert any("Loop-C" in t for t in texts), texts
        assert any("seam step (last -> first)" in t for t in texts), texts
    for node_id, entry in prompt.items():  # Video Compare: its preview (reference | candidate | difference) shown
        if entry["class_type"] == "VCUTVideoCompare":
            assert outputs[node_id]["images"] and outputs[node_id]["images"][0]["type"] == "temp", (name, node_id)
    if any(e["class_type"] == "VCUTJoinVideoSegments" for e in prompt.values()):
        texts = [t for o in outputs.values() for t in o.get("text", [])]
        assert any("joint 2 (frames 5 -> 6)" in t for t in texts), texts


# ---- the converter follows the frontend's graphToPrompt rules (real node definitions from ComfyUI) ----

def ui_node(node_id, node_type, widgets=(), inputs=(), outputs=(), mode=0, title=None):
    node = {"id": node_id, "type": node_type, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": link, **({"widget": {"name": n}} if w else {})}
                       for n, t, link, w in inputs],
            "outputs": [{"name": n, "type": t, "links": ls} for n, t, ls in outputs]}
    if title:
        node["title"] = title
    return node


def test_converter_follows_the_frontend_rules(comfy_nodes):
    from vcut.runner.convert import WorkflowError, ui_to_api
    nodes = [
        ui_node(1, "LoadImage", ["example.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
        ui_node(3, "Reroute", inputs=[("", "*", 1, False)], outputs=[("", "IMAGE", [2])]),
        ui_node(2, "ImageScale", ["bilinear", 16, 16, "center"], mode=4,  # bypassed: image passes through
                inputs=[("image", "IMAGE", 2, False)], outputs=[("IMAGE", "IMAGE", [3])]),
        ui_node(4, "VCUTSalientMask", [0.0, True, 0.01, 0, 0.0, 0.5], title="Saliency",
                inputs=[("images", "IMAGE", 3, False), ("dilate", "INT", 4, True)],
                outputs=[("mask", "MASK", []), ("preview", "IMAGE", [5])]),
        ui_node(5, "PrimitiveNode", [7, "fixed"], outputs=[("INT", "INT", [4])]),
        ui_node(6, "ImageInvert", mode=2, inputs=[("image", "IMAGE", 5, False)], outputs=[("IMAGE", "IMAGE", [6])]),
        ui_node(7, "PreviewImage", inputs=[("images", "IMAGE", 6, False)]),
        ui_node(8, "KSampler", [5, "randomize", 3, 2.0, "euler", "normal", 1.0]),
        ui_node(9, "VCUTALSSLoopClip", [5, 3, 11, "fixed", 0, "error"]),
        ui_node(10, "Note", ["about"]),
        ui_node(11, "MarkdownNote", ["# about"]),
    ]
    links = [[1, 1, 0, 3, 0, "IMAGE"], [2, 3, 0, 2, 0, "IMAGE"], [3, 2, 0, 4, 0, "IMAGE"], [4, 5, 0, 4, 1, "INT"],
             [5, 4, 1, 6, 0, "IMAGE"], [6, 6, 0, 7, 0, "IMAGE"]]
    notes = []
    prompt = ui_to_api({"nodes": nodes, "links": links, "groups": []}, comfy_nodes.NODE_CLASS_MAPPINGS,
                       comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS, notes)
    assert notes == ["node 4 (VCUTSalientMask, 'Saliency'): the workflow has no value for widget 'motion' (saved "
                     "before this ComfyUI's VCUTSalientMask had it): using its default 1.0"]
    assert set(prompt) == {"1", "4", "7", "8", "9"}  # virtual, bypassed and muted nodes are not sent
    assert prompt["1"]["inputs"] == {"image": "example.png"}  # the upload widget's value is not sent
    assert prompt["4"]["inputs"] == {"threshold": 0.0, "refine": True, "min_area": 0.01, "dilate": 7,
                                     "feather": 0.0, "temporal_smoothing": 0.5, "images": ["1", 0],
                                     "motion": 1.0}  # a widget the saved workflow predates: its default
    assert prompt["4"]["_meta"]["title"] == "Saliency" and prompt["4"]["class_type"] == "VCUTSalientMask"
    assert prompt["1"]["_meta"]["title"] == comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS["LoadImage"]
    assert prompt["7"]["inputs"] == {}  # its source is muted: the frontend drops the input
    assert prompt["8"]["inputs"] == {"seed": 5, "steps": 3, "cfg": 2.0, "sampler_name": "euler",
                                     "scheduler": "normal", "denoise": 1.0}  # "randomize" is not an input
    assert prompt["9"]["inputs"] == {"forward_frames": 5, "stride": 3, "seed": 11, "start": 0,
                                     "if_too_short": "error"}
    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    assert ui_to_api(api, comfy_nodes.NODE_CLASS_MAPPINGS) == api  # an API prompt passes as it is
    with pytest.raises(WorkflowError, match="NoSuchNode"):
        ui_to_api({"nodes": [ui_node(1, "NoSuchNode")], "links": []}, comfy_nodes.NODE_CLASS_MAPPINGS)
    with pytest.raises(WorkflowError, match="link 9"):
        ui_to_api({"nodes": [ui_node(1, "PreviewImage", inputs=[("images", "IMAGE", 9, False)])], "links": []},
                  comfy_nodes.NODE_CLASS_MAPPINGS)


def refusal(cls, node_type: str, values: list) -> tuple[str, str]:
    """The two parts of the converter's message for `values` on this ComfyUI's node `cls`, from its INPUT_TYPES."""
    from vcut.runner.convert import CONTROL, widget_slots
    slots = widget_slots(cls.INPUT_TYPES(), values)
    extra = values[len(slots):]
    assert extra, (node_type, slots, values)  # the premise: the newer layout does not fit this ComfyUI's node
    return (f"the workflow holds {len(values)} widget values, but this ComfyUI's {node_type} takes {len(slots)} "
            f"({', '.join(s for s in slots if s is not CONTROL)}",
            f"the values {', '.join(map(repr, extra))} after them have no widget here")


def test_workflows_saved_with_a_newer_comfyui_are_refused_with_the_widgets_named(comfy_nodes):
    """On this ComfyUI's real SaveVideo / CreateVideo: the layout that frontend 1.58 saves with ComfyUI 0.38.1
    (DynamicCombo format with nested codec, a hidden top-level codec; CreateVideo's color_space and codec) does not
    fit; the error names the node, this ComfyUI's widgets (from its own INPUT_TYPES: 0.8.0 and 0.30.0 differ) and
    the values left over, instead of shifting them onto the wrong inputs."""
    from vcut.runner.convert import WorkflowError, ui_to_api
    mapping = comfy_nodes.NODE_CLASS_MAPPINGS
    shipped = harness.load_workflow("svd_vcut_img2vid.json")
    save = next(n for n in shipped["nodes"] if n["type"] == "SaveVideo")
    assert save["widgets_values"] == ["video/vcut_svd", "auto", "auto"]  # what 0.8.0 (any frontend) saves
    save["widgets_values"] = ["video/vcut_svd", "auto", "auto", "auto"]  # 0.38.1 + frontend 1.58, all defaults
    with pytest.raises(WorkflowError) as error:
        ui_to_api(shipped, mapping, comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS)
    takes, left = refusal(mapping["SaveVideo"], "SaveVideo", save["widgets_values"])
    assert str(error.value).startswith(f"node {save['id']} (SaveVideo): {takes}") and left in str(error.value)
    newer = json.loads((harness.PACK_ROOT / "tests" / "fixtures" / "video_roundtrip_frontend_1.58.json").read_text())
    create = next(n for n in newer["nodes"] if n["type"] == "CreateVideo")
    with pytest.raises(WorkflowError) as error:
        ui_to_api(newer, mapping)  # the first node that does not fit: 0.38.1's CreateVideo has new widgets
    takes, left = refusal(mapping["CreateVideo"], "CreateVideo", create["widgets_values"])
    assert str(error.value).startswith(f"node 3 (CreateVideo): {takes}") and left in str(error.value)
    newer["nodes"] = [n for n in newer["nodes"] if n["type"] != "CreateVideo"]
    newer["links"] = [link for link in newer["links"] if 3 not in (link[1], link[3])]
    newer["nodes"][-1]["inputs"][0]["link"] = None
    save = next(n for n in newer["nodes"] if n["type"] == "SaveVideo")
    with pytest.raises(WorkflowError) as error:
        ui_to_api(newer, mapping)
    takes, left = refusal(mapping["SaveVideo"], "SaveVideo", save["widgets_values"])
    assert str(error.value).startswith(f"node 4 (SaveVideo, 'Save loop'): {takes}") and left in str(error.value)
