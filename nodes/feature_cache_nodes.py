"""UNet Feature Cache (DeepCache for SVD): ComfyUI glue around cut/feature_cache.py.

A feature of the sampling-run layer (run.py): CacheConfig attached to a cloned ModelPatcher, one CacheState per
sampling run (features kept per CallKey: conditioning x core context window x MultiGPU device, so a window never
uses another window's feature), the step the layer tracks, and one wrapper, no monkey-patching:
- DIFFUSION_MODEL: a full step runs ComfyUI's own UNetModel._forward and keeps, per conditioning row, the feature
  that enters output block L-1-branch (through an output_block_patch, ComfyUI's own hook there); a partial step
  runs ComfyUI's own input_blocks[0..branch] and output_blocks[L-1-branch..] through forward_timestep_embed with
  SVD's num_video_frames / image_only_indicator / time_context, so every in-block patch still applies.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

import torch
from comfy.ldm.modules.diffusionmodules import openaimodel
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrapperExecutor, WrappersMP
from comfy_api.latest import io

from ..cut.feature_cache import SCHEDULES, RunStats, full_steps, schedule_summary, validate, validate_branch
from .checks import log, require_svd
from .compat import schema_extras
from .patch_layer import FEATURE_CACHE, ModelPatch
from .run import CALL_MARKS, CallKey, FeatureConfig, FeatureState, SamplingRun, current_run

NAME = "UNet Feature Cache"
# Model-level patches that a partial step cannot honour: they act on the blocks' outputs or skips in an order the
# skipped deep blocks are part of. A step that has them runs fully.
UNHONOURED_PATCHES = ("input_block_patch", "input_block_patch_after_skip", "output_block_patch")
_REPLACED_BLOCK = re.compile(r"^diffusion_model(\.(input_blocks|middle_block|output_blocks|out)(\.\d+)?)?$")


@dataclasses.dataclass(frozen=True)
class CacheConfig(FeatureConfig):
    """UNet Feature Cache's settings (attached to the clone)."""
    name: ClassVar[str] = NAME
    interval: int
    branch: int
    schedule: str = "uniform"
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self) -> None:
        validate(self.interval, self.schedule, self.start_percent, self.end_percent)

    def new_state(self, run: SamplingRun) -> CacheState:
        state = CacheState(self, run.total_steps)
        run.kinds.add("partial")
        log.info("%s (interval %d, branch %d, %s): %s", NAME, self.interval, self.branch, self.schedule,
                 schedule_summary(run.total_steps, sorted(state.full)))
        return state


class CacheState(FeatureState):
    """One sampling run: which steps are full, the kept features per CallKey (conditioning x context window x
    device), what was done."""

    def __init__(self, config: CacheConfig, total_steps: int) -> None:
        self.config = config
        self.full = set(full_steps(total_steps, config.interval, config.schedule, config.start_percent,
                                   config.end_percent))
        self.features: dict[CallKey, tuple] = {}  # key -> (input rows shape, feature rows, transformer_index)
        self.weights: dict[CallKey, tuple | None] = {}  # key -> the hook weights its feature was computed with
        self.stats = RunStats()

    def reset(self) -> None:
        self.features.clear()
        self.weights.clear()

    def report(self) -> str:
        return f"{NAME}: {self.stats.summary()}"


def _partial_forward(unet: openaimodel.UNetModel, x: torch.Tensor, timesteps: torch.Tensor,
                     context: torch.Tensor | None, y: torch.Tensor | None, transformer_options: dict,
                     kwargs: dict[str, Any], branch: int, feature: torch.Tensor, index: int) -> torch.Tensor:
    """UNetModel._forward (ComfyUI 0.8.0 - 0.38.1) for the shallow path only: input blocks 0..branch, then the
    output blocks from L-1-branch on, with `feature` as the h that enters that output block (DeepCache Eq. 5)."""
    transformer_options["original_shape"] = list(x.shape)
    transformer_options["transformer_index"] = 0
    patches = transformer_options.get("patches", {})
    video = {"time_context": kwargs.get("time_context", None),
             "num_video_frames": kwargs.get("num_video_frames", unet.default_num_video_frames),
             "image_only_indicator": kwargs.get("image_only_indicator", None)}
    emb = unet.time_embed(openaimodel.timestep_embedding(timesteps, unet.model_channels, repeat_only=False)
                          .to(x.dtype))
    for p in patches.get("emb_patch", []):
        emb = p(emb, unet.model_channels, transformer_options)
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)
    h, hs = x, []
    for block in range(branch + 1):
        transformer_options["block"] = ("input", block)
        h = openaimodel.forward_timestep_embed(unet.input_blocks[block], h, emb, context, transformer_options,
                                               **video)
        hs.append(h)
    transformer_options["transformer_index"] = index  # as in a full step when it reaches this output block
    h = feature
    count = len(unet.output_blocks)
    for block in range(count - 1 - branch, count):
        transformer_options["block"] = ("output", block)
        h = torch.cat([h, hs.pop()], dim=1)
        output_shape = hs[-1].shape if hs else None
        h = openaimodel.forward_timestep_embed(unet.output_blocks[block], h, emb, context, transformer_options,
                                               output_shape, **video)
    return unet.out(h.type(x.dtype))


def _why_full(state: CacheState, transformer_options: dict, control: dict[str, Any] | None,
              keys: list[CallKey] | None, x: torch.Tensor) -> str | None:
    """Why this partial step must run fully, or None with every chunk's feature at hand."""
    patches = transformer_options.get("patches", {})
    named = [name for name in UNHONOURED_PATCHES if patches.get(name)]
    if named:
        return "another node's " + " / ".join(named)
    if control is not None:
        return "ControlNet residuals"
    if keys is None:
        return "batch chunks not told apart"
    rows = x.shape[0] // len(keys)
    if any(k not in state.features or state.features[k][0] != (rows, *x.shape[1:]) for k in keys):
        return "no kept feature for this batch"
    if any(state.weights.get(k) != transformer_options[CALL_MARKS].get("weights") for k in keys):
        return "a hook keyframe changed the weights since the kept feature"
    return None


def _hook_weights(run: SamplingRun) -> tuple | None:
    """The hook weights in effect for this call: ComfyUI patches a conditioning's hooks into the weights before its
    calls (ModelPatcher.current_hooks, each hook's keyframe strength; 0.8.0 and later). A kept feature is valid
    only under the same weights (hook keyframes switch mid-run)."""
    patcher = getattr(run.guider.model_patcher.model, "current_patcher", None)
    hooks = getattr(patcher, "current_hooks", None)
    return None if hooks is None else tuple((id(h.hook_ref), float(h.strength)) for h in hooks.hooks)


@torch.compiler.disable
def _plan(run: SamplingRun, state: CacheState, transformer_options: dict, control: dict[str, Any] | None,
          x: torch.Tensor) -> tuple[int, torch.Tensor | None, int]:
    """(branch, the kept feature for a partial call or None for a full one, its transformer_index), with the run's
    bookkeeping. Kept out of torch.compile's graphs (core TorchCompileModel compiles the UNet, this wrapper included):
    it reads and writes the run's Python state, which a graph would bake in or recompile for at every step. The
    call's keys go to the call's marks (run.CALL_MARKS), where _keep finds them without dynamo guarding on them."""
    branch, step = state.config.branch, run.step_at(transformer_options.get("sigmas"))
    keys = run.call_keys(transformer_options, x.shape[0], NAME)
    marks = transformer_options.setdefault(CALL_MARKS, {})
    marks["keys"], marks["weights"] = keys, _hook_weights(run)
    if step not in state.full:
        reason = _why_full(state, transformer_options, control, keys, x)
        if reason is None:
            state.stats.record(x.shape[0], partial=True)
            marks["kind"] = "partial"
            feature = torch.cat([state.features[k][1].to(x.device) for k in keys])
            return branch, feature, state.features[keys[0]][2]
        if reason not in state.stats.forced:
            log.info("%s: step %d runs the whole UNet: %s", NAME, step, reason)
        state.stats.force(reason)
    state.stats.record(x.shape[0], partial=False)
    return branch, None, 0


@torch.compiler.disable
def _keep(state: CacheState, transformer_options: dict, kept: dict, x: torch.Tensor) -> None:
    """Keep a full call's feature per CallKey (outside compiled graphs, as _plan)."""
    marks = transformer_options.get(CALL_MARKS, {})
    keys = marks.get("keys")
    if keys is not None and "h" in kept:
        rows = x.shape[0] // len(keys)
        for key, chunk in zip(keys, kept["h"].split(rows), strict=True):
            state.features[key] = ((rows, *x.shape[1:]), chunk, kept["index"])
            state.weights[key] = marks.get("weights")


def cache_diffusion_model(executor: WrapperExecutor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """DIFFUSION_MODEL wrapper: the full or the partial UNet call of this step."""
    x, timesteps, context, y, control, transformer_options = args[:6]  # UNetModel.forward's positional call
    run = current_run(transformer_options)
    state = None if run is None else run.state(FEATURE_CACHE)
    if state is None:
        return executor(*args, **kwargs)
    unet = executor.class_obj
    branch, feature, index = _plan(run, state, transformer_options, control, x)
    if feature is not None:
        return _partial_forward(unet, x, timesteps, context, y, transformer_options, kwargs, branch, feature, index)
    first = len(unet.output_blocks) - 1 - branch
    kept = {}

    def keep(h: torch.Tensor, hsp: torch.Tensor, options: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if options.get("block") == ("output", first):
            kept["h"], kept["index"] = h, options.get("transformer_index", 0)
        return h, hsp
    # a copy with our patch first: transformer_options' patches dict can be shared with the model's options
    patches = dict(transformer_options.get("patches", {}))
    patches["output_block_patch"] = [keep, *patches.get("output_block_patch", [])]
    options = {**transformer_options, "patches": patches}
    out = executor(*args[:5], options, *args[6:], **kwargs)
    _keep(state, transformer_options, kept, x)
    return out


def replaced_blocks(model: ModelPatcher) -> list[str]:
    """Object patches that replace the UNet or one of its blocks as a whole (another node's own forward)."""
    return sorted(k for k in model.object_patches if _REPLACED_BLOCK.match(k))


class VCUTFeatureCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTFeatureCache",
            display_name="UNet Feature Cache",
            category="vcut/speed",
            **schema_extras(io.Schema, search_aliases=["deepcache", "feature cache", "svd cache", "faster svd"]),
            description=(
                "DeepCache (Ma, Fang, Wang, CVPR 2024) for SVD / SVD-XT: adjacent denoising steps have nearly the "
                "same deep UNet features. A full step runs the whole UNet and keeps the feature entering the "
                "up-path at one skip branch; the next interval-1 steps run only the shallow blocks above that "
                "branch, with the kept feature in place of everything below. Runs ComfyUI's own blocks, so "
                "VCUT Patch Model, attention patches and LoRAs apply; stacks with Cut Step Scheduler (kept per "
                "conditioning row). ControlNet residuals and input/output block patches make a step run fully "
                "(named in the log). A partial step is an approximation (interval 1 is exact): its quality on "
                "real SVD weights was not measured here; judge with the seam and motion numbers the pack "
                "reports. A hook keyframe that changes the weights mid-run makes that step run fully (named in "
                "the log)."),
            inputs=[
                io.Model.Input("model", tooltip="An SVD image-to-video model (optionally after VCUT Patch Model)."),
                io.Int.Input("interval", default=3, min=1, max=100,
                             tooltip="N: one full step, then N-1 partial steps. 1 = off (every step full, the "
                                     "unpatched computation). Larger = faster and further from the uncached video; "
                                     "the paper uses 2-5."),
                io.Int.Input("branch", default=0, min=0, max=64,
                             tooltip="Which skip connection the kept feature enters at: 0 = the shallowest (only "
                                     "the input conv and the last output block run on a partial step: the biggest "
                                     "saving, the largest approximation); larger = more blocks run, closer to the "
                                     "full step. SVD has branches 0-11."),
                io.Combo.Input("schedule", options=list(SCHEDULES), default="uniform",
                               tooltip="uniform: full steps 1, 1+N, 1+2N, ... non-uniform: the paper's schedule, the "
                                       "same number of full steps placed denser around 30% of the run where features "
                                       "change fastest (usually closer to the uncached video at the same cost)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Steps before this fraction of the run are all full: later start = the "
                                       "layout-forming first steps stay exact, less saving."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Steps from this fraction of the run on are all full: lower end = the "
                                       "detail-forming last steps stay exact, less saving."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the feature cache.")],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, interval: int, branch: int, schedule: str, start_percent: float,
                end_percent: float) -> io.NodeOutput:
        validate(interval, schedule, start_percent, end_percent)
        require_svd(model)
        unet = model.model.diffusion_model
        if not isinstance(unet, openaimodel.UNetModel):
            raise ValueError(f"model: {NAME} runs ComfyUI's UNetModel blocks, this SVD model's diffusion model is a "
                             f"{type(unet).__name__}")
        validate_branch(branch, len(unet.input_blocks))
        replaced = replaced_blocks(model)
        if replaced:
            log.warning("%s: another node replaced %s: the model is left alone (no cache)", NAME, ", ".join(replaced))
            return io.NodeOutput(model)
        config = CacheConfig(interval, branch, schedule, start_percent, end_percent)
        patched = ModelPatch(model)
        patched.set_feature(FEATURE_CACHE, config, {WrappersMP.DIFFUSION_MODEL: cache_diffusion_model})
        return io.NodeOutput(patched.patcher)


NODES = [VCUTFeatureCache]
