"""In-process ComfyUI for the integration tier: ComfyUI's own loader, model classes, samplers and executor.

Needs COMFYUI_PATH (a ComfyUI checkout, 0.8.0 tested) and ComfyUI's Python environment. Nothing is mocked:
- init_comfy(): ComfyUI on the CPU, its built-in nodes, and this pack loaded by ComfyUI's custom-node loader;
- tiny_svd(): ComfyUI's own SVD_img2vid model (comfy.supported_models.SVD_img2vid, shrunk), seeded random weights;
- svd_conds(): positive / negative / latent laid out exactly as SVD_img2vid_Conditioning returns them;
- run_prompt(): an API-format prompt executed by execution.PromptExecutor; Capture nodes hand outputs back.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import sys
import uuid

import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[2]
CAPTURED: dict[str, object] = {}
_STATE: dict[str, object] = {}


def comfy_path() -> pathlib.Path | None:
    path = os.environ.get("COMFYUI_PATH")
    return pathlib.Path(path) if path else None


def init_comfy():
    """Start ComfyUI in-process once; returns ComfyUI's `nodes` module with the pack registered."""
    if "nodes" in _STATE:
        return _STATE["nodes"]
    root = comfy_path()
    if root is None or not (root / "comfy").is_dir():
        raise RuntimeError(f"COMFYUI_PATH must point at a ComfyUI checkout, got {root}")
    sys.path.insert(0, str(root))
    import utils.extra_config  # noqa: F401  (as main.py does: ComfyUI's utils package before comfy/utils.py)
    from comfy.cli_args import args
    args.cpu = True
    import nodes
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    before = set(nodes.NODE_CLASS_MAPPINGS)
    if not asyncio.run(nodes.load_custom_node(str(PACK_ROOT))):
        raise RuntimeError("ComfyUI's custom-node loader failed to load the pack (see the log above)")
    _STATE["pack_nodes"] = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
    nodes.NODE_CLASS_MAPPINGS["VCUTTestCapture"] = Capture
    nodes.NODE_CLASS_MAPPINGS["VCUTTestTinySVD"] = TinySVDSource
    _STATE["nodes"] = nodes
    return nodes


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


def run_prompt(prompt: dict) -> dict:
    """Execute an API-format prompt with ComfyUI's PromptExecutor; returns CAPTURED. Raises on any node error."""
    init_comfy()
    import execution
    CAPTURED.clear()
    valid = asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))
    if not valid[0]:
        raise RuntimeError(f"prompt failed validation: {valid[1]} {valid[3]}")
    server = _Server()
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.NONE,
                                        cache_args={"lru": 0, "ram": 0})
    executor.execute(prompt, str(uuid.uuid4()), {}, valid[2])
    if not executor.success:
        errors = [data for event, data in executor.status_messages if event == "execution_error"]
        raise RuntimeError(f"execution failed: {errors}")
    return dict(CAPTURED)
