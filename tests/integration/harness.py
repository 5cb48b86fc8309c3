"""In-process ComfyUI for the integration tier: ComfyUI's own loader, model classes, samplers and executor.

Needs COMFYUI_PATH (a ComfyUI checkout, 0.8.0 tested) and ComfyUI's Python environment. Nothing is mocked:
- init_comfy(): ComfyUI on the CPU, its built-in nodes, and this pack loaded by ComfyUI's custom-node loader;
- tiny_svd(): ComfyUI's own SVD_img2vid model (comfy.supported_models.SVD_img2vid, shrunk), seeded random weights;
- svd_conds(): positive / negative / latent laid out exactly as SVD_img2vid_Conditioning returns them;
- run_prompt(): an API-format prompt executed by execution.PromptExecutor; Capture nodes hand outputs back;
- Session: one PromptExecutor (classic cache) kept across several prompts, as a server runs them;
- tiny_vae() / tiny_clip_vision() and the VCUTTestCheckpoint node that hands them out with tiny_svd() in place of
  ImageOnlyCheckpointLoader; real_frames() and write_inputs() feed real tests/data files to the real loaders;
- workflow_prompt(): a workflows/*.json converted by the pack's own converter (runner/convert.py), shrunk for the CPU.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import uuid

import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PACK_ROOT / "bench"))
from clips import read_frames  # noqa: E402  (the shared clip reader of the benchmarks and core tests)

TEST_DATA = PACK_ROOT / "tests" / "data"  # real photos and clips in the repository (tests/data/SOURCES.md)
CAPTURED: dict[str, object] = {}
_STATE: dict[str, object] = {}


def comfy_path() -> pathlib.Path | None:
    path = os.environ.get("COMFYUI_PATH")
    return pathlib.Path(path) if path else None


def scratch_dir() -> pathlib.Path:
    """One temporary folder for this test session (previews, tiny model configs), removed when Python exits."""
    if "scratch" not in _STATE:
        _STATE["scratch"] = pathlib.Path(tempfile.mkdtemp(prefix="vcut-integration-"))
        atexit.register(shutil.rmtree, _STATE["scratch"], ignore_errors=True)
    return _STATE["scratch"]


def init_comfy():
    """Start ComfyUI in-process once; returns ComfyUI's `nodes` module with the pack registered."""
    if "nodes" in _STATE:
        return _STATE["nodes"]
    root = comfy_path()
    if root is None or not (root / "comfy").is_dir():
        raise RuntimeError(f"COMFYUI_PATH must point at a ComfyUI checkout, got {root}")
    sys.path.insert(0, str(root))
    from comfy.cli_args import args
    args.cpu = True
    # ComfyUI's base directory (models, custom_nodes, input, output, temp, user) is a temporary folder: folder_paths
    # reads it when first imported and creates input/ there, so it must be set before anything imports folder_paths.
    args.base_directory = str(scratch_dir() / "comfy_base")
    # main.py's import order, not alphabetical: ComfyUI's utils package before comfy/utils.py
    import utils.extra_config  # noqa: F401, I001  (main.py's import order, for its side effects)
    import folder_paths
    import nodes
    assert pathlib.Path(folder_paths.get_temp_directory()).is_relative_to(scratch_dir())  # nothing in the checkout
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    before = set(nodes.NODE_CLASS_MAPPINGS)
    if not asyncio.run(nodes.load_custom_node(str(PACK_ROOT))):
        raise RuntimeError("ComfyUI's custom-node loader failed to load the pack (see the log above)")
    _STATE["pack_nodes"] = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
    nodes.NODE_CLASS_MAPPINGS["VCUTTestCapture"] = Capture
    nodes.NODE_CLASS_MAPPINGS["VCUTTestTinySVD"] = TinySVDSource
    nodes.NODE_CLASS_MAPPINGS["VCUTTestCheckpoint"] = TinyCheckpointLoader
    _STATE["nodes"] = nodes
    return nodes


def use_running_comfyui(nodes) -> None:
    """Inside a ComfyUI that is already running (a server loading server_nodes/): the tiny models need no init."""
    _STATE["nodes"] = nodes


def pack_node_ids() -> list[str]:
    """Node ids that ComfyUI registered when it loaded the pack."""
    init_comfy()
    return _STATE["pack_nodes"]


def pack_module():
    """The pack as ComfyUI's loader imported it (ComfyUI names a folder's module after its path)."""
    init_comfy()
    return sys.modules[str(PACK_ROOT).replace(".", "_x_")]


class Capture:
    """Test-only output node: stores whatever reaches it under its `key`, so tests can read node outputs."""
    OUTPUT_NODE = True
    FUNCTION = "capture"
    RETURN_TYPES = ()
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",), "key": ("STRING", {"default": "out"})}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        return True

    def capture(self, value, key):
        CAPTURED[key] = value
        return {}


TINY_SVD_CONFIG = {
    "in_channels": 8, "out_channels": 4, "model_channels": 64, "num_res_blocks": [1, 1],
    "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 64,
    "use_spatial_transformer": True,
    "adm_in_channels": 768, "num_classes": "sequential", "image_size": 32, "use_checkpoint": False,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
    "use_temporal_attention": True, "disable_temporal_crossattention": False, "dtype": torch.float32,
}


def tiny_svd(seed: int = 0):
    """ComfyUI's SVD_img2vid (shrunk config, seeded random weights) in a ModelPatcher, on the CPU."""
    init_comfy()
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SVD_img2vid(dict(TINY_SVD_CONFIG))
    model = config.get_model({})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # comfy.ops.disable_weight_init leaves weights uninitialised: fill them, seeded
        for p in model.diffusion_model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    model.diffusion_model.eval()
    device = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def svd_conds(frames: int = 3, height: int = 64, width: int = 64, seed: int = 0, context_dim: int = 64):
    """positive, negative, latent as SVD_img2vid_Conditioning returns them: the CLIP image embedding (1, 1, D)
    and the VAE latent of the image as concat_latent_image; zeros of both for the negative."""
    generator = torch.Generator().manual_seed(seed)
    pooled = torch.randn(1, 1, context_dim, generator=generator)
    image_latent = torch.randn(1, 4, height // 8, width // 8, generator=generator)
    extra = {"motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}
    positive = [[pooled, {**extra, "concat_latent_image": image_latent}]]
    negative = [[torch.zeros_like(pooled), {**extra, "concat_latent_image": torch.zeros_like(image_latent)}]]
    latent = {"samples": torch.zeros(frames, 4, height // 8, width // 8)}
    return positive, negative, latent


def sample(model, positive, negative, latent, steps=4, cfg=2.5, sampler="euler", scheduler="karras", seed=0,
           denoise=1.0):
    """ComfyUI's own KSampler path (nodes.common_ksampler) -> the sampled latent tensor."""
    nodes = init_comfy()
    return nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, positive, negative, latent,
                                 denoise=denoise)[0]["samples"]


def ksampler_node(model, positive, negative, latent, steps=4):
    """An API-prompt KSampler entry (inputs are [node id, slot] links) with the settings `sample` uses."""
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": positive, "negative": negative, "latent_image": latent, "seed": 0,
        "steps": steps, "cfg": 2.5, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}}


def rows_recorder(calls: list):
    """A test-only node class (MODEL -> MODEL, registered by the test as VCUTTestRecordRows): a clone whose UNet
    calls' rows go into a new list appended to `calls` each time the node runs."""
    class RecordRows:
        FUNCTION = "record"
        RETURN_TYPES = ("MODEL",)
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"model": ("MODEL",)}}

        def record(self, model):
            recorded, rows = record_unet_calls(model)
            calls.append(rows)
            return (recorded,)
    return RecordRows


def node(nodes, name):
    """The node class registered under `name` (ComfyUI's NODE_CLASS_MAPPINGS)."""
    return nodes.NODE_CLASS_MAPPINGS[name]


def rel_err_max(a, b) -> float:
    """The largest difference relative to the largest value: max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def rel_err_l2(a, b) -> float:
    """The relative L2 difference: ||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm())


def record_unet_calls(model):
    """Clone of `model` whose UNet calls are recorded as (rows, sigma) through ComfyUI's unet function wrapper."""
    calls = []
    recorded = model.clone()

    def wrapper(apply_model, args):
        calls.append((args["input"].shape[0], float(args["timestep"].max())))
        return apply_model(args["input"], args["timestep"], **args["c"])
    recorded.set_model_unet_function_wrapper(wrapper)
    return recorded, calls


class TinySVDSource:
    """Test-only source node: the tiny SVD model and its conds/latent (no weights exist on test machines)."""
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 3, "min": 1}), "seed": ("INT", {"default": 0})}}

    def load(self, frames, seed):
        return (tiny_svd(seed), *svd_conds(frames=frames, seed=seed))


class _Server:
    """What PromptExecutor needs of ComfyUI's server: a client id, a message sink, the last node id."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))


def _new_executor(cache_type: str):
    """ComfyUI's PromptExecutor with the cache type of that name, built by the runner's helper (cache_args as every
    supported ComfyUI reads them)."""
    init_comfy()
    import execution

    from vcut.runner.local import comfy_compat
    return comfy_compat().new_prompt_executor(execution, _Server(), getattr(execution.CacheType, cache_type))


def _execute_on(executor, prompt: dict):
    """Validate and execute an API-format prompt on `executor`; returns (CAPTURED, history_result).
    Raises on a validation error or any node error."""
    import execution
    CAPTURED.clear()
    valid = asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))
    if not valid[0]:
        raise RuntimeError(f"prompt failed validation: {valid[1]} {valid[3]}")
    executor.execute(prompt, str(uuid.uuid4()), {}, valid[2])
    if not executor.success:
        errors = [data for event, data in executor.status_messages if event == "execution_error"]
        raise RuntimeError(f"execution failed: {errors}")
    return dict(CAPTURED), executor.history_result


def execute(prompt: dict):
    """Execute an API-format prompt on a new PromptExecutor with no output cache (every node runs); returns
    (CAPTURED, history_result). Raises on a validation error or any node error."""
    return _execute_on(_new_executor("NONE"), prompt)


class Session:
    """Prompts run as a ComfyUI server runs them: ONE PromptExecutor with its output cache (unchanged nodes are not
    run again and hand out the same objects, e.g. the same loaded model), and ComfyUI's model management keeping
    the last sampled model loaded, with its patches applied, between prompts."""

    def __init__(self):
        self.executor = _new_executor("CLASSIC")

    def run(self, prompt: dict) -> dict:
        return _execute_on(self.executor, prompt)[0]


def fresh_session_run(prompt: dict) -> dict:
    """The same prompt as in a newly started server: no model loaded, every node run, new models built."""
    init_comfy()
    import comfy.model_management
    comfy.model_management.unload_all_models()
    return run_prompt(prompt)


def run_prompt(prompt: dict) -> dict:
    """Execute an API-format prompt with ComfyUI's PromptExecutor; returns CAPTURED. Raises on any node error."""
    return execute(prompt)[0]


# ---- tiny models and real inputs for whole workflows ----

def tiny_vae(seed=0):
    """ComfyUI's own VAE class (AutoencoderKL, 8x down, 4 latent channels), tiny, seeded random weights."""
    init_comfy()
    import comfy.sd
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    vae = comfy.sd.VAE(sd={}, config={"params": {"embed_dim": 4, "ddconfig": ddconfig}})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.first_stage_model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return vae


def tiny_clip_vision(tmp_dir=None, seed=0):
    """ComfyUI's own CLIP vision model, tiny (projection 64 = the tiny SVD's context_dim), seeded random weights."""
    init_comfy()
    import comfy.clip_vision
    config = {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "gelu", "hidden_size": 32, "image_size": 32,
              "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-5,
              "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 2,
              "patch_size": 16, "projection_dim": 64, "torch_dtype": "float32"}
    path = pathlib.Path(tmp_dir or scratch_dir()) / "tiny_clip_vision.json"
    path.write_text(json.dumps(config))
    clip_vision = comfy.clip_vision.ClipVisionModel(str(path))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clip_vision.model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return clip_vision


class TinyCheckpointLoader:
    """Test-only stand-in for ImageOnlyCheckpointLoader (same outputs): the tiny SVD, CLIP vision and VAE,
    because no weights exist on the test machines."""
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP_VISION", "VAE")
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": ""})}}

    def load(self, ckpt_name):
        return tiny_svd(), tiny_clip_vision(), tiny_vae()


def real_frames(n, size=64):
    """The first n frames of a real clip from tests/data, centre-cropped and scaled to size x size."""
    init_comfy()
    import comfy.utils
    video = torch.from_numpy(read_frames(TEST_DATA / "video" / "vid_h264.mp4", n)).float() / 255.0
    return comfy.utils.common_upscale(video.movedim(-1, 1), size, size, "bilinear", "center").movedim(1, -1)


def write_clip(path, frames=6, height=72, width=100, start=120, top=200, left=300, fps=12):
    """A short H.264 crop of tests/data/video/car-detection.mp4 (real motion), written to `path`."""
    import av
    import numpy as np
    clip = read_frames(TEST_DATA / "video" / "car-detection.mp4", frames, start)[:, top:top + height,
                                                                                   left:left + width]
    with av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for crop in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def write_inputs(folder, photo="astronaut.png", size=(96, 64), clip_frames=6):
    """The files the example workflows load, made from real tests/data: example.png (a photo, shrunk),
    keyframe_middle.png and keyframe_last.png (two other photos, other sizes) and reference.mp4 (a short clip crop)."""
    from PIL import Image
    folder = pathlib.Path(folder)
    Image.open(TEST_DATA / "photos" / photo).convert("RGB").resize(size).save(folder / "example.png")
    Image.open(TEST_DATA / "photos" / "chelsea.png").convert("RGB").resize((80, 64)).save(
        folder / "keyframe_middle.png")
    Image.open(TEST_DATA / "photos" / "coffee.png").convert("RGB").resize((64, 48)).save(
        folder / "keyframe_last.png")
    write_clip(folder / "reference.mp4", frames=clip_frames)
    return folder


@contextlib.contextmanager
def comfy_folders(input_dir=None, output_dir=None, temp_dir=None):
    """Point ComfyUI's input / output / temp folders at test folders for the duration."""
    init_comfy()
    import folder_paths
    old = (folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_temp_directory())
    try:
        if input_dir:
            folder_paths.set_input_directory(str(input_dir))
        if output_dir:
            folder_paths.set_output_directory(str(output_dir))
        if temp_dir:
            folder_paths.set_temp_directory(str(temp_dir))
        yield
    finally:
        folder_paths.set_input_directory(old[0])
        folder_paths.set_output_directory(old[1])
        folder_paths.set_temp_directory(old[2])


def load_workflow(name):
    return json.loads((PACK_ROOT / "workflows" / name).read_text())


def workflow_prompt(workflow, overrides=None, substitute=None):
    """A UI workflow -> API prompt by the pack's converter (as the frontend does it), the checkpoint loader swapped
    for VCUTTestCheckpoint, then inputs overridden by class_type ({"KSampler": {"steps": 2}})."""
    nodes = init_comfy()
    from vcut.runner.convert import ui_to_api
    prompt = ui_to_api(workflow, nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS)
    substitute = {"ImageOnlyCheckpointLoader": "VCUTTestCheckpoint", **(substitute or {})}
    for entry in prompt.values():
        entry["inputs"].update((overrides or {}).get(entry["class_type"], {}))
        entry["class_type"] = substitute.get(entry["class_type"], entry["class_type"])
    return prompt


# ---- UI-format workflows built in tests (the converter's frontend rules) ----

def ui_node(node_id, node_type, widgets=(), inputs=(), outputs=(), mode=0, title=None):
    """One node as the frontend saves it; inputs are (name, type, link, is a widget) and outputs (name, type, links)."""
    node = {"id": node_id, "type": node_type, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": link, **({"widget": {"name": n}} if w else {})}
                       for n, t, link, w in inputs],
            "outputs": [{"name": n, "type": t, "links": ls} for n, t, ls in outputs]}
    if title:
        node["title"] = title
    return node


def frontend_rules_workflow(salient_widgets=(0.0, True, 0.01, 0, 0.0, 0.5, 1.0)) -> dict:
    """LoadImage -> Reroute -> ImageScale (bypassed) -> Salient Mask titled "Saliency" (its dilate widget an input fed
    by a PrimitiveNode holding 7, with `salient_widgets` saved) -> ImageInvert (muted) -> PreviewImage; a KSampler with
    its seed control, ALSS Loop Clip, a Note and a MarkdownNote: every rule of the frontend's graphToPrompt."""
    nodes = [
        ui_node(1, "LoadImage", ["example.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
        ui_node(3, "Reroute", inputs=[("", "*", 1, False)], outputs=[("", "IMAGE", [2])]),
        ui_node(2, "ImageScale", ["bilinear", 16, 16, "center"], mode=4,  # bypassed: image passes through
                inputs=[("image", "IMAGE", 2, False)], outputs=[("IMAGE", "IMAGE", [3])]),
        ui_node(4, "VCUTSalientMask", list(salient_widgets), title="Saliency",
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
    return {"nodes": nodes, "links": links, "groups": [], "version": 0.4}
