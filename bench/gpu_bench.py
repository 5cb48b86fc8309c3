"""GPU benchmark: whole SVD-XT videos through ComfyUI's own model class, KSampler and executor, on one ComfyUI release
per run (0.8.0, and 0.30.0 with dynamic VRAM as its main.py enables it), and the codec's GPU search.

ComfyUI is started in-process in the order of its own main.py: CLI args, then (ComfyUI 0.30.0 and later)
comfy-aimdo's `control.init` and `cuda_malloc` before torch is imported, then comfy, the nodes, and (0.30.0) main.py's
second step: on an NVIDIA GPU with torch >= 2.8, `comfy_aimdo.control.init_devices(...)`, then
`comfy.model_patcher.CoreModelPatcher = ModelPatcherDynamic` and `comfy.memory_management.aimdo_enabled = True`.
The model is built as ComfyUI's checkpoint loader builds it (comfy/sd.py): on `unet_inital_load_device` (the CPU under
dynamic VRAM), in a `CoreModelPatcher` with the loader's load and offload devices. On a CPU ComfyUI falls back to the
plain ModelPatcher; the report says which patcher class ran and whether dynamic VRAM was on.

Sampling: ComfyUI's SVD_img2vid model (comfy.supported_models.SVD_img2vid) built from SVD-XT's unet config (checked
against comfy.model_detection) at full size, seeded random weights (the cost of a forward pass does not depend on
them), 25 frames at 1024x576, fp16, KSampler (nodes.common_ksampler, euler / karras, cfg 2.5, 25 steps). Variants,
chained through the nodes' own classes as a workflow chains them:
    baseline            the model as loaded
    exact / paper       VCUT Patch Model (mode exact / paper)
    exact + cut 17      ... then Cut Step Scheduler (cut_step 17: 16 guided steps, 9 conditional-only)
    paper + cut 17
    exact + cut 17 + EasyCache   ... then core's EasyCache node (comfy_extras/nodes_easycache.py, its defaults)
    cache N=3           UNet Feature Cache (interval 3, branch 0, uniform) on the model as loaded
    exact + cut 17 + cache N=3   ... on exact + cut 17
Reported per variant: seconds per video (each run), the ratio to the baseline per repetition, peak GPU memory
(torch.cuda.max_memory_allocated, plus the weights comfy-aimdo holds in VRAM under dynamic VRAM), UNet calls / rows,
calls of attn2.to_q (a forward pre-hook on every cross-attention's to_q: VCUT must never run it) and how far the
output latent is from the baseline's (VCUT exact must equal it up to float rounding).
Checks through ONE PromptExecutor (as a server runs prompts), the model handed out by a source node of this script:
  mode switch   baseline, exact, paper, exact, paper, baseline prompts in a row: each prompt's live attn2 modules are
                those of its mode and each repeated prompt gives the first one's latent (upstream #16490: an
                object-patched module receiving the previous object's buffers would break this);
  Video Extend  3 segments in one prompt (KSampler -> Video Extend -> KSampler -> Video Extend -> KSampler): seconds
                and UNet calls per segment, timed from the executor's own "executing" messages (upstream #14396).
A time guard (--max-minutes) skips whatever would pass the limit, and says so in the report.

Codec: Motion Vector Encode's search on a 1920x1080 clip (vid_h264.mp4 upscaled): the torch exhaustive search on the
GPU (codec/torch_ops.py) beside the CPU paths, best of --codec-repeats, vectors checked equal, encoding lossless.

Writes <out>/gpu_bench.md (the tables, rewritten after every part so a run cut short still leaves its rows) and
<out>/gpu_bench.json. The full-size run of both releases is one command on a GPU machine (scripts/gpu_bench.sh, see
BENCHMARKS.md, "GPU benchmark"); on the CPU at a reduced size it proves the path works:

    python bench/gpu_bench.py --out bench/out/gpu --comfy .gpu/ComfyUI-0.30.0         # full size, cuda, fp16
    python bench/gpu_bench.py --device cpu --dtype fp32 --size 128x72 --frames 4 --steps 4 --out bench/out/gpu-cpu
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.metadata
import json
import logging
import os
import pathlib
import platform
import statistics
import sys
import time
import uuid

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
torch = None  # imported by start_comfy(), after comfy-aimdo's init and cuda_malloc, in the order of ComfyUI's main.py

# SVD-XT's UNet, as comfy.model_detection.detect_unet_config reads it from the svd_xt checkpoint (SVD, SVD-XT and
# SVD-XT 1.1 share this UNet; they differ in frames and training). Verified at run time: see check_unet_config.
SVD_XT_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 1024,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
    "use_temporal_attention": True, "disable_temporal_crossattention": False,
}
DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}  # torch names (torch is imported later)
# "exact equals the baseline": mean abs difference / mean abs of the output latents after a whole video
EXACT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}
VARIANTS = ("baseline", "exact", "paper", "exact + cut", "paper + cut", "exact + cut + EasyCache", "cache N=3",
            "exact + cut + cache N=3")
SWITCH_PROMPTS = ("baseline", "exact", "paper", "exact", "paper", "baseline")
SEGMENTS = 3
SPEED_KEPT = 1.2  # Video Extend keeps its speed: the last segment takes at most this times the second's seconds


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1024x576, got {text!r}") from None
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 8 (latent = size / 8), got {text!r}")
    return width, height


def default_comfy() -> str:
    return os.environ.get("COMFYUI_PATH") or str(PACK_ROOT / ".gpu" / "ComfyUI-0.30.0")


def default_clip() -> str:
    for path in (PACK_ROOT / ".gpu" / "vid_h264.mp4", PACK_ROOT.parent / "shared" / "data" / "video" / "vid_h264.mp4"):
        if path.exists():
            return str(path)
    return str(PACK_ROOT / ".gpu" / "vid_h264.mp4")


class Budget:
    """The run's time guard: a part starts only if its estimated seconds fit before the deadline; skipped parts are
    listed in the report."""

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.deadline = time.perf_counter() + 60 * minutes
        self.skipped: list[str] = []

    def allows(self, what: str, seconds: float) -> bool:
        left = self.deadline - time.perf_counter()
        if seconds <= left:
            return True
        self.skipped.append(f"{what} (needs about {seconds:.0f} s, {max(left, 0):.0f} s left)")
        print(f"time guard (--max-minutes {self.minutes:g}): skipped {self.skipped[-1]}", flush=True)
        return False


# ---------------------------------------------------------------- ComfyUI

def start_comfy(root: str, device: str) -> tuple[object, dict]:
    """ComfyUI imported in-process in the order of its main.py, the pack loaded by ComfyUI's own custom-node loader.
    Returns ComfyUI's `nodes` module and what ran: version, dynamic VRAM, patcher class."""
    global torch
    if not (pathlib.Path(root) / "comfy").is_dir():
        sys.exit(f"--comfy must point at a ComfyUI checkout (0.8.0 or 0.30.0 tested), got {root}: run "
                 f"scripts/gpu_bench_prep.sh or set COMFYUI_PATH")
    sys.path.insert(0, root)
    from comfy.cli_args import args
    args.cpu = device == "cpu"
    import utils.extra_config  # noqa: F401  (as main.py does: ComfyUI's utils package before comfy/utils.py)
    try:
        from comfy.cli_args import enables_dynamic_vram  # dynamic VRAM (comfy-aimdo) came after 0.8.0
    except ImportError:
        enables_dynamic_vram = None
    if enables_dynamic_vram is not None and enables_dynamic_vram():
        import comfy_aimdo.control  # main.py (0.30.0): before torch is imported
        headroom = None if args.reserve_vram is None else int(args.reserve_vram * 1024 ** 3)
        comfy_aimdo.control.init(simple_vram_headroom=headroom, nvml_pressure=not args.disable_nvml_pressure)
    if device != "cpu":
        import cuda_malloc  # noqa: F401  (main.py: sets torch's cudaMallocAsync backend before torch is imported)
    import comfy.utils  # noqa: I001  (main.py's import order, not alphabetical: torch before nodes)
    import comfyui_version
    import torch  # the module global above, bound here in main.py's order

    import nodes
    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bars in the log
    info = {"version": comfyui_version.__version__, "dynamic_vram": enable_dynamic_vram(args, enables_dynamic_vram)}
    if not asyncio.run(nodes.load_custom_node(str(PACK_ROOT))):
        sys.exit("ComfyUI's custom-node loader failed to load the pack (see the log above)")
    nodes.NODE_CLASS_MAPPINGS.update({"VCUTBenchSource": BenchSource, "VCUTBenchCapture": BenchCapture})
    return nodes, info


def enable_dynamic_vram(args, enables_dynamic_vram) -> str:
    """The second step of 0.30.0's main.py (after `import nodes`), at this script's console log level (WARNING):
    says whether dynamic VRAM is on, and if not, why."""
    import comfy.model_management as mm
    import comfy.model_patcher
    if enables_dynamic_vram is None or not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        return "not in this ComfyUI (no comfy-aimdo)"
    import comfy.memory_management
    if not (args.enable_dynamic_vram or (enables_dynamic_vram() and mm.is_nvidia() and not mm.is_wsl())):
        return f"off: ComfyUI enables it on NVIDIA GPUs only (device {mm.get_torch_device()}): plain ModelPatcher"
    if not args.enable_dynamic_vram and mm.torch_version_numeric < (2, 8):
        return f"off: torch {torch.__version__} < 2.8 (ComfyUI falls back to the plain ModelPatcher)"
    import comfy_aimdo.control
    if not comfy_aimdo.control.init_devices((d.index, int(args.vram_headroom * 1024 ** 3))
                                            for d in mm.get_all_torch_devices()):
        return "off: comfy-aimdo's init_devices failed (ComfyUI falls back to the plain ModelPatcher)"
    comfy_aimdo.control.set_log_warning()
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    comfy.memory_management.aimdo_enabled = True
    return f"on (comfy-aimdo {importlib.metadata.version('comfy-aimdo')})"


def aimdo_vram_bytes() -> int | None:
    """VRAM that comfy-aimdo holds (the weights dynamic VRAM staged), or None when dynamic VRAM is off."""
    memory_management = sys.modules.get("comfy.memory_management")  # 0.8.0 has none
    if not getattr(memory_management, "aimdo_enabled", False):
        return None
    import comfy_aimdo.control
    return int(comfy_aimdo.control.get_total_vram_usage())


def check_unet_config(config: dict, model_class: bool = True) -> None:
    """The config must be what ComfyUI detects from the UNet's state dict, and (model_class) must make ComfyUI pick
    SVD_img2vid, as it does for an SVD-XT checkpoint: build the UNet on the meta device (shapes, no memory), run
    comfy.model_detection on its state dict. (A shrunk width is detected alike but matches no model class.)"""
    import comfy.model_detection
    import comfy.supported_models
    meta_model = comfy.supported_models.SVD_img2vid(dict(config)).get_model({}, device=torch.device("meta"))
    state_dict = meta_model.diffusion_model.state_dict()
    detected = comfy.model_detection.detect_unet_config(state_dict, "")
    differs = {k: (v, detected.get(k)) for k, v in config.items() if detected.get(k) != v}
    if differs:
        raise RuntimeError(f"SVD_XT_UNET differs from what ComfyUI detects from its own state dict: {differs}")
    if model_class:
        chosen = comfy.model_detection.model_config_from_unet_config(detected, state_dict)
        if type(chosen).__name__ != "SVD_img2vid":
            raise RuntimeError(f"ComfyUI would load this UNet as {type(chosen).__name__}, not SVD_img2vid")
    params = sum(p.numel() for p in meta_model.diffusion_model.parameters())
    print(f"unet config (model_channels {config['model_channels']}) = ComfyUI's detection of it"
          + (", model class SVD_img2vid" if model_class else "") + f", {params / 1e9:.3f} B parameters")


def unet_config(model_channels: int) -> dict:
    """SVD-XT's config; another model_channels only for a functional proof on a CPU (all else as SVD-XT)."""
    return {**SVD_XT_UNET, "model_channels": model_channels}


def build_svd_xt(config_dict: dict, dtype, seed: int):
    """ComfyUI's SVD_img2vid from `config_dict`, seeded random weights, placed as comfy/sd.py's checkpoint loader
    places a loaded one: weights on `unet_inital_load_device` (the CPU under dynamic VRAM), in a CoreModelPatcher
    (ModelPatcherDynamic when dynamic VRAM is on) with the loader's load and offload devices."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    from vcut.bench.vcut_wallclock import fill_weights_
    config = comfy.supported_models.SVD_img2vid(dict(config_dict))
    config.set_inference_dtype(dtype, None)
    load_device = mm.get_torch_device()
    model = config.get_model({}, device=load_device)  # filled where it computes (fast), then moved where it loads
    # comfy.ops.disable_weight_init leaves weights uninitialised: fill them, seeded (scaled so that activations
    # stay finite through the 1.5B-parameter UNet in fp16)
    fill_weights_(model.diffusion_model, seed)
    model.diffusion_model.eval()
    parameters = sum(p.numel() for p in model.diffusion_model.parameters())
    initial = mm.unet_inital_load_device(parameters, dtype)
    model.to(initial)
    patcher_class = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)  # 0.8.0: none
    patcher = patcher_class(model, load_device=load_device, offload_device=mm.unet_offload_device())
    if initial != torch.device("cpu"):  # as the loader does for a model it put on the GPU
        mm.load_models_gpu([patcher], force_full_load=True)
    return patcher, str(initial)


def svd_conds(frames: int, width: int, height: int, seed: int):
    """positive, negative, latent as SVD_img2vid_Conditioning returns them (CLIP image embedding (1, 1, 1024), the
    image's VAE latent as concat_latent_image, zeros for the negative; an empty latent of `frames` frames)."""
    generator = torch.Generator().manual_seed(seed)
    pooled = torch.randn(1, 1, SVD_XT_UNET["context_dim"], generator=generator)
    image_latent = torch.randn(1, 4, height // 8, width // 8, generator=generator)
    extra = {"motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}
    positive = [[pooled, {**extra, "concat_latent_image": image_latent}]]
    negative = [[torch.zeros_like(pooled), {**extra, "concat_latent_image": torch.zeros_like(image_latent)}]]
    return positive, negative, {"samples": torch.zeros(frames, 4, height // 8, width // 8)}


def node_output(output):
    """First output of a V3 node's execute (io.NodeOutput) or a V1 tuple."""
    return output.args[0] if hasattr(output, "args") else output[0]


def easycache_inputs(threshold: float | None) -> dict:
    """Core EasyCache's widget values: the running ComfyUI's own defaults, reuse_threshold replaced if given."""
    from comfy_extras.nodes_easycache import EasyCacheNode
    required = EasyCacheNode.INPUT_TYPES()["required"]
    values = {name: spec[1]["default"] for name, spec in required.items() if name != "model"}
    if threshold is not None:
        values["reuse_threshold"] = threshold
    return values


def build_variants(nodes, model, cut_step: int, easycache_threshold: float | None) -> dict:
    """Each variant's MODEL, chained through the nodes' public classes as a workflow chains the nodes."""
    from comfy_extras.nodes_easycache import EasyCacheNode
    patch = nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"]
    cut = nodes.NODE_CLASS_MAPPINGS["VCUTCutStepScheduler"]
    feature_cache = nodes.NODE_CLASS_MAPPINGS["VCUTFeatureCache"]

    def with_cut(m):
        return node_output(cut.execute(m, cut_step=cut_step, cut_fraction=0.0, after_cut="drop", auto_threshold=0.0))

    def with_cache(m):
        return node_output(feature_cache.execute(m, interval=3, branch=0, schedule="uniform", start_percent=0.0,
                                                 end_percent=1.0))
    exact = node_output(patch.execute(model, mode="exact"))
    paper = node_output(patch.execute(model, mode="paper"))
    exact_cut = with_cut(exact)
    easycache = node_output(EasyCacheNode.execute(exact_cut, **easycache_inputs(easycache_threshold)))
    return {"baseline": model, "exact": exact, "paper": paper, "exact + cut": exact_cut,
            "paper + cut": with_cut(paper), "exact + cut + EasyCache": easycache, "cache N=3": with_cache(model),
            "exact + cut + cache N=3": with_cache(exact_cut)}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class UNetCalls:
    """Counts, by forward pre-hooks on modules that every variant's clone shares (no ComfyUI wrapper slot is taken):
    the UNet's real evaluations (with their times and rows, frames x conds) on its time embedding, which runs inside
    the DIFFUSION_MODEL wrappers (a step that EasyCache answers from its cache is not counted); the evaluations that
    run the deep blocks (the middle block's first layer: a UNet Feature Cache partial step does not); the calls of
    every cross-attention's to_q (VCUT never runs it); and, at the first evaluation of each video, the class of the
    attn2 module in effect at each cross-attention site (what the clone's object patches put there)."""

    def __init__(self, model):
        from vcut.cut.attention import find_cross_attentions
        self.unet = model.model.diffusion_model
        self.sites = find_cross_attentions(self.unet)
        self.calls = self.rows = self.to_q = self.deep = 0
        self.times: list[float] = []
        self.live: dict[str, int] = {}
        self.unet.time_embed.register_forward_pre_hook(self._count)
        self.unet.middle_block[0].register_forward_pre_hook(self._count_deep)
        for site in self.sites:
            site.module.to_q.register_forward_pre_hook(self._count_to_q)

    def _count(self, module, args):
        if not self.calls:
            self.live = dict(collections.Counter(type(self.unet.get_submodule(s.name)).__name__ for s in self.sites))
        self.calls += 1
        self.rows += args[0].shape[0]
        self.times.append(time.perf_counter())

    def _count_to_q(self, module, args):
        self.to_q += 1

    def _count_deep(self, module, args):
        self.deep += 1

    def expected_live(self, mode: str) -> dict[str, int]:
        """The attn2 classes a correctly patched model of `mode` has at its sites."""
        if mode == "baseline":
            return dict(collections.Counter(type(s.module).__name__ for s in self.sites))
        removed = sum(s.kind == "temporal" for s in self.sites) if mode == "paper" else 0
        counts = {"BroadcastCrossAttention": len(self.sites) - removed, "RemovedCrossAttention": removed}
        return {k: v for k, v in counts.items() if v}

    def take(self) -> dict:
        counts = {"unet_calls": self.calls, "unet_rows": self.rows, "deep_calls": self.deep, "to_q_calls": self.to_q,
                  "live_attn2": self.live}
        self.calls = self.rows = self.to_q = self.deep = 0
        self.live, self.times = {}, []
        return counts


def sample_once(nodes, model, conds, steps: int, device: str, seed: int) -> tuple[float, int | None, object]:
    """One whole video through ComfyUI's KSampler: (seconds, peak GPU bytes or None, output latent)."""
    positive, negative, latent = conds
    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = nodes.common_ksampler(model, seed, steps, 2.5, "euler", "karras", positive, negative, latent)[0]["samples"]
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return seconds, peak, out.float().cpu()


def relative_difference(a, b) -> float:
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12))


# ---------------------------------------------------------------- prompts through one executor

SOURCES: dict[str, tuple] = {}
CAPTURED: dict[str, object] = {}


class BenchSource:
    """This script's source node (no checkpoint exists on the bench machine): the model it built and the
    conditionings and latent, as ImageOnlyCheckpointLoader + SVD_img2vid_Conditioning hand them out."""
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    CATEGORY = "vcut/bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "svd_xt"})}}

    def load(self, name):
        return SOURCES[name]


class BenchCapture:
    """This script's output node: keeps what reaches it under `key`."""
    OUTPUT_NODE = True
    FUNCTION = "capture"
    RETURN_TYPES = ()
    CATEGORY = "vcut/bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",), "key": ("STRING", {"default": "out"})}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        return True

    def capture(self, value, key):
        CAPTURED[key] = value
        return {}


class BenchServer:
    """What PromptExecutor needs of ComfyUI's server; keeps the messages with their times (perf_counter)."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.sockets_metadata = {}
        self.messages: list[tuple[float, str, object]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((time.perf_counter(), event, data))

    def queue_updated(self):
        pass


class Session:
    """ONE execution.PromptExecutor with ComfyUI's classic output cache, kept across prompts as a server keeps it."""

    def __init__(self):
        import execution
        self.execution = execution
        self.server = BenchServer()
        # cache_args: 0.8.0 reads "lru" and "ram", 0.30.0 also "ram_inactive"
        self.executor = execution.PromptExecutor(self.server, cache_type=execution.CacheType.CLASSIC,
                                                 cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})

    def run(self, prompt: dict) -> dict:
        CAPTURED.clear()
        self.server.messages.clear()
        prompt_id = str(uuid.uuid4())
        valid = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not valid[0]:
            raise RuntimeError(f"prompt failed validation: {valid[1]} {valid[3]}")
        self.executor.execute(prompt, prompt_id, {"client_id": "vcut-bench"}, valid[2])
        if not self.executor.success:
            errors = [data for event, data in self.executor.status_messages if event == "execution_error"]
            raise RuntimeError(f"execution failed: {errors}")
        return dict(CAPTURED)

    def node_intervals(self) -> dict[str, tuple[float, float]]:
        """(start, end) of every node the last prompt executed, from the executor's "executing" messages."""
        starts = [(t, data.get("node")) for t, event, data in self.server.messages if event == "executing"]
        pairs = zip(starts, starts[1:], strict=False)
        return {node: (t, t_next) for (t, node), (t_next, _) in pairs if node is not None}


def ksampler(model, positive, negative, latent, steps: int, seed: int) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": positive, "negative": negative, "latent_image": latent, "seed": seed,
        "steps": steps, "cfg": 2.5, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}}


def mode_prompt(mode: str, steps: int, seed: int) -> dict:
    """Source -> (VCUT Patch Model, mode) -> KSampler -> capture; the baseline samples the source's model."""
    prompt = {"src": {"class_type": "VCUTBenchSource", "inputs": {"name": "svd_xt"}}}
    model = ["src", 0]
    if mode != "baseline":
        prompt["vcut"] = {"class_type": "VCUTPatchModel", "inputs": {"model": ["src", 0], "mode": mode}}
        model = ["vcut", 0]
    prompt["sample"] = ksampler(model, ["src", 1], ["src", 2], ["src", 3], steps, seed)
    prompt["keep"] = {"class_type": "VCUTBenchCapture", "inputs": {"value": ["sample", 0], "key": "latent"}}
    return prompt


def run_mode_switch(session, counter, steps: int, seed: int) -> dict:
    """SWITCH_PROMPTS in a row through one executor: every prompt's live attn2 classes must be its mode's, and a
    repeated prompt must give the latent the first prompt of that mode gave (to the run-to-run spread of the
    repeated baseline)."""
    counter.take()
    results, first = [], {}
    for mode in SWITCH_PROMPTS:
        started = time.perf_counter()
        latent = session.run(mode_prompt(mode, steps, seed))["latent"]["samples"].float().cpu()
        counts = counter.take()
        entry = {"mode": mode, "seconds": time.perf_counter() - started, **counts,
                 "live_as_mode": counts["live_attn2"] == counter.expected_live(mode)}
        if mode in first:
            entry["vs_first"] = relative_difference(latent, first[mode])
        else:
            first[mode] = latent
            if mode != "baseline" and "baseline" in first:
                entry["vs_baseline"] = relative_difference(latent, first["baseline"])
        results.append(entry)
        print(f"mode switch {mode}: {entry['seconds']:.2f} s, live attn2 {counts['live_attn2']}, "
              f"to_q calls {counts['to_q_calls']}" + (f", vs first {entry['vs_first']:.2e}"
                                                      if "vs_first" in entry else ""), flush=True)
    spread = results[-1]["vs_first"]  # the repeated baseline: run-to-run spread of this machine
    repeats_ok = all(e["vs_first"] <= spread for e in results if "vs_first" in e)
    return {"steps": steps, "prompts": results, "run_to_run_spread": spread,
            "repatched_fully": repeats_ok and all(e["live_as_mode"] for e in results)
            and all(e["to_q_calls"] == 0 for e in results if e["mode"] != "baseline")}


def extend_prompt(frames: int, overlap: int, steps: int, cut_step: int, seed: int) -> dict:
    """One prompt of SEGMENTS segments, as workflows/video_extend_3_segments.json chains them: VCUT Patch Model ->
    Cut Step Scheduler -> KSampler, then (Video Extend -> KSampler) per further segment, each Video Extend taking
    the first segment's model and conditionings and the previous segment's latent."""
    prompt = {
        "src": {"class_type": "VCUTBenchSource", "inputs": {"name": "svd_xt"}},
        "vcut": {"class_type": "VCUTPatchModel", "inputs": {"model": ["src", 0], "mode": "exact"}},
        "cut": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["vcut", 0], "cut_step": cut_step,
                                                               "cut_fraction": 0.0, "after_cut": "drop",
                                                               "auto_threshold": 0.0}},
        "s1": ksampler(["cut", 0], ["src", 1], ["src", 2], ["src", 3], steps, seed),
    }
    for i in range(2, SEGMENTS + 1):
        prompt[f"x{i}"] = {"class_type": "VCUTVideoExtend", "inputs": {
            "model": ["cut", 0], "previous": [f"s{i - 1}", 0], "positive": ["src", 1], "negative": ["src", 2],
            "overlap": overlap, "frames": frames, "anchor_steps": 1.0, "jit_cfg": True, "image_from_previous": True}}
        prompt[f"s{i}"] = ksampler([f"x{i}", 0], [f"x{i}", 1], [f"x{i}", 2], [f"x{i}", 3], steps, seed)
    for i in range(1, SEGMENTS + 1):
        prompt[f"keep{i}"] = {"class_type": "VCUTBenchCapture", "inputs": {"value": [f"s{i}", 0], "key": f"s{i}"}}
    return prompt


def run_video_extend(session, counter, args) -> dict:
    """Seconds and UNet calls of each segment's KSampler in one prompt."""
    overlap = min(2, args.frames - 1)
    counter.take()
    started = time.perf_counter()
    out = session.run(extend_prompt(args.frames, overlap, args.extend_steps, args.cut_step, args.seed))
    total = time.perf_counter() - started
    intervals = session.node_intervals()
    segments = []
    for i in range(1, SEGMENTS + 1):
        start, end = intervals[f"s{i}"]
        calls = sum(start <= t < end for t in counter.times)
        segments.append({"seconds": end - start, "unet_calls": calls,
                         "frames": int(out[f"s{i}"]["samples"].shape[0])})
    counter.take()
    ratio = segments[-1]["seconds"] / segments[1]["seconds"]
    print("video extend: " + ", ".join(f"segment {i + 1} {s['seconds']:.2f} s ({s['unet_calls']} calls)"
                                       for i, s in enumerate(segments)), flush=True)
    return {"steps": args.extend_steps, "overlap": overlap, "segments": segments, "prompt_seconds": total,
            "last_to_second": ratio, "keeps_speed": ratio <= SPEED_KEPT}


# ---------------------------------------------------------------- sampling part

def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def sampling_table(part: dict) -> str:
    runs = part["runs"]
    lines = [f"### Sampling: {part['setup']}", "",
             "| variant | s/video (each run) | median s/video | ratio to baseline (median, min-max of the per-run "
             "ratios) | peak GPU memory (GiB): torch peak + aimdo weights | UNet calls / rows per video | attn2.to_q "
             "calls | output vs baseline (mean abs diff / mean abs) |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    base = runs.get("baseline", [])
    for variant, entries in runs.items():
        if not entries:
            continue
        seconds = [e["seconds"] for e in entries]
        ratios = [e["seconds"] / b["seconds"] for e, b in zip(entries, base, strict=False)]
        ratio = (f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else "-")
        if variant == "baseline":
            ratio = "1"
        peaks = [e["peak_bytes"] for e in entries if e["peak_bytes"] is not None]
        aimdo = [e["aimdo_bytes"] for e in entries if e["aimdo_bytes"] is not None]
        peak = (gib(max(peaks)) if peaks else "- (CPU)") + (f" + {gib(max(aimdo))}" if aimdo else "")
        diff = "-" if variant == "baseline" else f"{part['output_vs_baseline'].get(variant, float('nan')):.2e}"
        if not part["finite"].get(variant, True):
            diff += " (output not finite)"
        last = entries[-1]
        lines.append(f"| {variant} | {' / '.join(f'{s:.2f}' for s in seconds)} | {statistics.median(seconds):.2f} "
                     f"| {ratio} | {peak} | {last['unet_calls']} / {last['unet_rows']} | {last['to_q_calls']} "
                     f"| {diff} |")
    checks = part.get("checks", {})
    if checks:
        lines += ["", "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())]
    return "\n".join(lines)


def switch_table(switch: dict) -> str:
    lines = [f"### Mode switch: {len(switch['prompts'])} prompts through one PromptExecutor, {switch['steps']} steps "
             "each", "", "| prompt | mode | s | live attn2 modules | as the mode needs | attn2.to_q calls | latent vs "
             "the mode's first prompt | vs the baseline prompt |", "|---:|---|---:|---|---|---:|---:|---:|"]
    for i, e in enumerate(switch["prompts"], 1):
        live = ", ".join(f"{n} {k}" for k, n in sorted(e["live_attn2"].items()))
        lines.append(f"| {i} | {e['mode']} | {e['seconds']:.2f} | {live} | {'yes' if e['live_as_mode'] else 'NO'} "
                     f"| {e['to_q_calls']} | {e.get('vs_first', float('nan')):.2e} "
                     f"| {e.get('vs_baseline', float('nan')):.2e} |")
    lines += ["", f"Re-patched fully on every switch: {'yes' if switch['repatched_fully'] else 'NO'} (run-to-run "
              f"spread, repeated baseline: {switch['run_to_run_spread']:.2e})"]
    return "\n".join(lines).replace("| nan", "| -").replace("nan |", "- |")


def extend_table(extend: dict) -> str:
    lines = [f"### Video Extend: {SEGMENTS} segments in one prompt (exact + cut, {extend['steps']} steps, overlap "
             f"{extend['overlap']}), seconds of each segment's KSampler from the executor's messages", "",
             "| segment | frames | s | UNet calls |", "|---:|---:|---:|---:|"]
    for i, s in enumerate(extend["segments"], 1):
        lines.append(f"| {i} | {s['frames']} | {s['seconds']:.2f} | {s['unet_calls']} |")
    lines += ["", f"Keeps its speed (last segment at most {SPEED_KEPT}x the second's seconds): "
              f"{'yes' if extend['keeps_speed'] else 'NO'} ({extend['last_to_second']:.2f}x)"]
    return "\n".join(lines)


def estimate(step_seconds: float, steps: int, videos: int = 1) -> float:
    return 1.2 * step_seconds * steps * videos + 2.0


def run_sampling(args, nodes, report, budget: Budget) -> None:
    """Warm-ups, one repetition of the variants, the mode switch, Video Extend, then further repetitions; each
    part only if the time guard lets it start."""
    from vcut.cache.deepcache import full_steps
    width, height = args.size
    dtype = getattr(torch, DTYPES[args.dtype])
    check_unet_config(SVD_XT_UNET)
    config = unet_config(args.model_channels)
    if config != SVD_XT_UNET:
        check_unet_config(config, model_class=False)
    t0 = time.perf_counter()
    model, initial_device = build_svd_xt(config, dtype, args.seed)
    synchronize(args.device)
    report["comfyui"].update(patcher=type(model).__name__, weights_start_on=initial_device)
    print(f"model built and filled in {time.perf_counter() - t0:.1f} s; patcher {type(model).__name__} (ComfyUI "
          f"{report['comfyui']['version']}, dynamic VRAM {report['comfyui']['dynamic_vram']}), weights on "
          f"{initial_device}", flush=True)
    counter = UNetCalls(model)
    variants = build_variants(nodes, model, args.cut_step, args.easycache_threshold)
    variants = {k: v for k, v in variants.items() if k in args.variants}
    conds = svd_conds(args.frames, width, height, args.seed)
    SOURCES["svd_xt"] = (model, *conds)
    import comfy.model_management
    attention = "pytorch (sdpa)" if comfy.model_management.pytorch_attention_enabled() else "ComfyUI default"
    unet = ("SVD-XT UNet" if config == SVD_XT_UNET else
            f"SVD-XT UNet shrunk to model_channels {args.model_channels} (functional proof, not SVD-XT's cost)")
    setup = (f"ComfyUI {report['comfyui']['version']}, {type(model).__name__} (dynamic VRAM "
             f"{report['comfyui']['dynamic_vram']}), {unet} (ComfyUI SVD_img2vid, random weights), {args.frames} "
             f"frames at {width}x{height}, {args.dtype}, KSampler euler/karras cfg 2.5, {args.steps} steps, cut at "
             f"step {args.cut_step}, EasyCache {easycache_inputs(args.easycache_threshold)}, {args.device}, attention "
             f"{attention}, up to {args.repeats} interleaved repetitions after a {args.warmup_steps}-step warm-up "
             f"per variant")
    print(setup, flush=True)
    step_seconds = 0.0
    for name, model_variant in variants.items():  # warm-up: loads the model, fills the kernels' caches
        seconds, _, _ = sample_once(nodes, model_variant, conds, args.warmup_steps, args.device, args.seed)
        step_seconds = max(step_seconds, seconds / args.warmup_steps)
        print(f"warm-up {name}: {seconds:.2f} s", flush=True)
    counter.take()
    part = report["sampling"] = {"setup": setup, "runs": {name: [] for name in variants}, "output_vs_baseline": {},
                                 "finite": {}, "checks": {}}
    outputs = {}

    def repetition(number: int) -> bool:
        nonlocal step_seconds
        if not budget.allows(f"sampling repetition {number} ({len(variants)} videos)",
                             estimate(step_seconds, args.steps, len(variants))):
            return False
        for name, model_variant in variants.items():
            seconds, peak, out = sample_once(nodes, model_variant, conds, args.steps, args.device, args.seed)
            counts = counter.take()
            if name == "baseline":
                step_seconds = seconds / args.steps
            part["runs"][name].append({"repetition": number, "seconds": seconds, "peak_bytes": peak,
                                       "aimdo_bytes": aimdo_vram_bytes(), **counts})
            part["finite"][name] = part["finite"].get(name, True) and bool(torch.isfinite(out).all())
            outputs.setdefault(name, out)
            if name != "baseline" and "baseline" in outputs:
                part["output_vs_baseline"][name] = relative_difference(outputs[name], outputs["baseline"])
            print(f"rep {number} {name}: {seconds:.2f} s" + (f", peak {gib(peak)} GiB" if peak is not None else "")
                  + f", to_q calls {counts['to_q_calls']}", flush=True)
        runs, diffs = part["runs"], part["output_vs_baseline"]
        checks = part["checks"]
        if "exact" in diffs:
            checks[f"exact equals the baseline (within {EXACT_TOLERANCE[args.dtype]:g})"] = (
                diffs["exact"] <= EXACT_TOLERANCE[args.dtype])
        checks["attn2.to_q never runs under VCUT"] = all(
            e["to_q_calls"] == 0 for name, entries in runs.items() if name not in ("baseline", "cache N=3")
            for e in entries)
        checks["attn2.to_q runs in the baseline (the counter works)"] = all(
            e["to_q_calls"] > 0 for e in runs.get("baseline", []))
        if "exact + cut + EasyCache" in runs and "exact + cut" in runs:
            checks["EasyCache skips UNet calls after the cut alone"] = (
                runs["exact + cut + EasyCache"][-1]["unet_calls"] < runs["exact + cut"][-1]["unet_calls"])
        full = len(full_steps(args.steps, 3))
        for name in ("cache N=3", "exact + cut + cache N=3"):
            if name in runs:
                checks[f"{name}: the deep blocks run on the {full} full steps only"] = all(
                    e["deep_calls"] == full < e["unet_calls"] for e in runs[name])
        report["sampling_md"] = sampling_table(part)
        write_report(args.out, report)
        return True

    repetition(1)
    session = Session()
    if budget.allows(f"mode switch ({len(SWITCH_PROMPTS)} prompts)",
                     estimate(step_seconds, args.switch_steps, len(SWITCH_PROMPTS))):
        report["mode_switch"] = run_mode_switch(session, counter, args.switch_steps, args.seed)
        report["mode_switch_md"] = switch_table(report["mode_switch"])
        write_report(args.out, report)
    if budget.allows(f"Video Extend ({SEGMENTS} segments)", estimate(step_seconds, args.extend_steps, SEGMENTS)):
        report["video_extend"] = run_video_extend(session, counter, args)
        report["video_extend_md"] = extend_table(report["video_extend"])
        write_report(args.out, report)
    for number in range(2, args.repeats + 1):
        if not repetition(number):
            break


# ---------------------------------------------------------------- codec

def run_codec(args, report) -> None:
    import cv2
    import numpy as np

    from vcut.bench.clips import read_frames
    from vcut.codec import decode, encode, torch_ops
    width, height = args.codec_size
    raw = read_frames(args.codec_clip, args.codec_frames, 30)
    frames = torch.from_numpy(np.stack(
        [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in raw]))
    pairs = frames.shape[0] - 1
    cpu_pairs = min(args.codec_cpu_pairs, pairs)
    few = frames[:cpu_pairs + 1]
    fast_device = args.device if args.device.startswith("cuda") else "cpu"
    backend = "auto" if fast_device != "cpu" else "torch"  # on a CPU-only proof, the torch path runs on the CPU
    jobs = {
        f"torch exhaustive 16x16 +-16 on {fast_device} (codec/torch_ops.py), {pairs} pairs":
            (pairs, lambda: encode(frames, 16, 16, "exhaustive", fast_device, backend=backend)),
        f"numpy/OpenCV fast 16x16 +-16 on cpu, 2 threads (codec/blockmatch.py), {pairs} pairs":
            (pairs, lambda: encode(frames, 16, 16, "fast", "cpu", threads=2)),
        f"numpy/OpenCV exhaustive 16x16 +-16 on cpu, 2 threads, {cpu_pairs} pairs":
            (cpu_pairs, lambda: encode(few, 16, 16, "exhaustive", "cpu", threads=2)),
    }
    best, outs = {k: float("inf") for k in jobs}, {}
    for _ in range(args.codec_repeats):  # interleaved; the best run is the least disturbed one
        for name, (_n, fn) in jobs.items():
            synchronize(fast_device)
            start = time.perf_counter()
            outs[name] = fn()
            synchronize(fast_device)
            best[name] = min(best[name], time.perf_counter() - start)
    start = time.perf_counter()  # the same torch search on the CPU, search only, once
    for i in range(cpu_pairs):
        torch_ops.exhaustive_search(torch_ops.luma(frames[i + 1]), torch_ops.luma(frames[i]), 16, 16)
    torch_cpu = (f"torch exhaustive 16x16 +-16 on cpu, search only, {cpu_pairs} pairs, 1 run",
                 cpu_pairs / (time.perf_counter() - start))
    names = list(jobs)
    gpu_mv, gpu_res = outs[names[0]]
    cpu_mv = outs[names[2]][0]
    same_vectors = torch.equal(gpu_mv.vectors[:cpu_pairs].cpu(), cpu_mv.vectors.cpu())
    lossless = torch.equal(decode(frames[0], gpu_mv, gpu_res), frames)
    device_name = torch.cuda.get_device_name() if fast_device != "cpu" else platform.processor() or "cpu"
    lines = [f"### Codec: Motion Vector Encode on {width}x{height} (vid_h264.mp4 upscaled, {args.codec_frames} "
             f"frames), {device_name}, {os.cpu_count()} CPU cores, best of {args.codec_repeats} interleaved runs", "",
             "| method | frame pairs/s | ratio to numpy/OpenCV fast |", "|---|---:|---:|"]
    fps = {name: jobs[name][0] / best[name] for name in jobs}
    fps[torch_cpu[0]] = torch_cpu[1]
    reference = fps[names[1]]
    for name, value in fps.items():
        lines.append(f"| {name} | {value:.2f} | {value / reference:.2f} |")
    lines += ["", f"torch search vectors equal to numpy/OpenCV exhaustive ({cpu_pairs} pairs): "
              f"{'yes' if same_vectors else 'NO'}; decode(encode(video)) equals the video: "
              f"{'yes' if lossless else 'NO'}"]
    report["codec"] = {"fps": fps, "same_vectors": same_vectors, "lossless": lossless, "size": [width, height]}
    report["codec_md"] = "\n".join(lines)
    write_report(args.out, report)


# ---------------------------------------------------------------- report

def write_report(out: pathlib.Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    comfy = report["comfyui"]
    parts = [f"## GPU benchmark run {report['date']}: ComfyUI {comfy['version']}", "", report["machine"], "",
             f"ComfyUI {comfy['version']}: dynamic VRAM {comfy['dynamic_vram']}; model patcher "
             f"{comfy.get('patcher', '-')}, weights start on {comfy.get('weights_start_on', '-')}", "",
             f"Command: `{report['command']}`"]
    for key in ("codec_md", "sampling_md", "mode_switch_md", "video_extend_md"):
        if key in report:
            parts += ["", report[key]]
    if report["skipped"]:
        parts += ["", f"Skipped by the time guard (--max-minutes {report['max_minutes']:g}): "
                  + "; ".join(report["skipped"]) + "."]
    (out / "gpu_bench.md").write_text("\n".join(parts) + "\n")
    (out / "gpu_bench.json").write_text(json.dumps({k: v for k, v in report.items() if not k.endswith("_md")},
                                                   indent=1, default=str))


def machine_line(device: str) -> str:
    line = f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        line = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, " + line
    else:
        cpu = platform.processor() or platform.machine()
        line = f"CPU only ({cpu}, torch threads {torch.get_num_threads()}), " + line
    return line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for gpu_bench.md / gpu_bench.json")
    parser.add_argument("--comfy", default=default_comfy(), help="ComfyUI checkout (default: .gpu/ComfyUI-0.30.0, "
                        "made by scripts/gpu_bench_prep.sh; or $COMFYUI_PATH)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (functional proof only)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--size", type=parse_size, default=(1024, 576), help="WIDTHxHEIGHT (default 1024x576)")
    parser.add_argument("--frames", type=int, default=25, help="video frames (SVD-XT: 25)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--model-channels", type=int, default=SVD_XT_UNET["model_channels"],
                        help="UNet width (SVD-XT: 320); smaller only for a functional proof on a CPU (a multiple "
                             "of 64: ComfyUI gives every 64 channels one attention head)")
    parser.add_argument("--cut-step", type=int, default=17)
    parser.add_argument("--easycache-threshold", type=float, default=None,
                        help="EasyCache's reuse_threshold (default: the running ComfyUI's node default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--switch-steps", type=int, default=4, help="steps of each mode-switch prompt")
    parser.add_argument("--extend-steps", type=int, default=10, help="steps of each Video Extend segment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default); 1 for a CPU proof on a busy machine, where "
                             "OpenMP threads spin-waiting on each other can make calls 30x slower")
    parser.add_argument("--max-minutes", type=float, default=7.5,
                        help="this run's time limit: no part starts that would pass it (scripts/gpu_bench.sh "
                             "splits one 10-minute device call between the releases)")
    parser.add_argument("--no-sampling", action="store_true")
    parser.add_argument("--no-codec", action="store_true")
    parser.add_argument("--codec-clip", default=default_clip())
    parser.add_argument("--codec-size", type=parse_size, default=(1920, 1080))
    parser.add_argument("--codec-frames", type=int, default=30)
    parser.add_argument("--codec-cpu-pairs", type=int, default=4,
                        help="frame pairs for the slow CPU exhaustive searches")
    parser.add_argument("--codec-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    if "baseline" not in args.variants:
        parser.error("--variants must include baseline (the ratios are to it)")
    if args.model_channels <= 0 or args.model_channels % 64:
        parser.error(f"--model-channels must be a positive multiple of 64, got {args.model_channels}")
    if args.device == "cpu" and args.dtype == "fp16":
        parser.error("--device cpu needs --dtype fp32 (or bf16)")
    if args.frames < 2:
        parser.error(f"--frames must be at least 2 (Video Extend overlaps segments by 1-2 frames), got {args.frames}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    budget = Budget(args.max_minutes)
    nodes, comfy = start_comfy(args.comfy, args.device)  # imports torch; also makes the pack importable
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible to torch; use --device cpu for a functional proof")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_line(args.device),
              "comfyui": comfy, "max_minutes": args.max_minutes, "skipped": budget.skipped,
              "command": "python bench/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(report["machine"], flush=True)
    print(f"ComfyUI {comfy['version']} from {args.comfy}: dynamic VRAM {comfy['dynamic_vram']}", flush=True)
    sys.path.insert(0, str(PACK_ROOT / "bench"))
    from pack_import import register_pack
    register_pack()
    if not args.no_codec:  # first: short and bounded, so a long sampling part cannot crowd it out
        run_codec(args, report)
    if not args.no_sampling:
        run_sampling(args, nodes, report, budget)
    report["total_seconds"] = time.perf_counter() - started
    write_report(args.out, report)
    print((args.out / "gpu_bench.md").read_text())
    print(f"total {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
