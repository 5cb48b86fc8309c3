"""UNet Feature Cache (DeepCache for SVD): ComfyUI glue around cache/deepcache.py.

A feature of the sampling-run layer (run.py): CacheConfig attached to a cloned ModelPatcher, one CacheState per
sampling run (features kept per CallKey: conditioning x core context window x MultiGPU device, so a window never
uses another window's feature), the step the layer tracks, and one wrapper, no monkey-patching:
- DIFFUSION_MODEL: a full step runs ComfyUI's own UNetModel._forward and keeps, per conditioning row, the feature
  that enters output block L-1-branch (comfy_compat.keep_output_block_input: ComfyUI's output_block_patch hook); a
  partial step runs ComfyUI's own input_blocks[0..branch] and output_blocks[L-1-branch..] through
  comfy_compat.unet_forward (the pack's one copy of ComfyUI's forward sequence, checked bit for bit against the
  running ComfyUI's), so every in-block patch still applies.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, NamedTuple

import torch
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrapperExecutor, WrappersMP
from comfy_api.latest import io

from ..cache.deepcache import SCHEDULES, RunStats, full_steps, schedule_summary, validate, validate_branch
from . import comfy_compat
from .checks import require_svd
from .log import log
from .patch_layer import FEATURE_CACHE, ModelPatch
from .run import CALL_MARKS, CallKey, FeatureConfig, FeatureState, SamplingRun, current_run

NAME = "UNet Feature Cache"
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


class KeptFeature(NamedTuple):
    """What a full call kept for one CallKey: its input rows' shape, the feature rows entering output block
    L-1-branch, the transformer_index there, and the hook weights it was computed with (None without hooks)."""
    shape: tuple
    rows: torch.Tensor
    transformer_index: int
    weights: tuple | None


class CacheState(FeatureState):
    """One sampling run: which steps are full, the kept features per CallKey (conditioning x context window x
    device), what was done."""

    def __init__(self, config: CacheConfig, total_steps: int) -> None:
        self.config = config
        self.full = set(full_steps(total_steps, config.interval, config.schedule, config.start_percent,
                                   config.end_percent))
        self.features: dict[CallKey, KeptFeature] = {}
        self.stats = RunStats()

    def reset(self) -> None:
        self.features.clear()

    def report(self) -> str:
        return f"{NAME}: {self.stats.summary()}"


def _why_full(state: CacheState, transformer_options: dict, control: dict[str, Any] | None,
              keys: list[CallKey] | None, x: torch.Tensor) -> str | None:
    """Why this partial step must run fully, or None with every chunk's feature at hand."""
    named = comfy_compat.unfollowed_patches(transformer_options)  # act between blocks the partial step skips
    if named:
        return "another node's " + " / ".join(named)
    if control is not None:
        return "ControlNet residuals"
    if keys is None:
        return "batch chunks not told apart"
    rows = x.shape[0] // len(keys)
    if any(k not in state.features or state.features[k].shape != (rows, *x.shape[1:]) for k in keys):
        return "no kept feature for this batch"
    if any(state.features[k].weights != transformer_options[CALL_MARKS].get("weights") for k in keys):
        return "a hook keyframe changed the weights since the kept feature"
    return None


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
    # a kept feature is valid only under the same weights (hook keyframes switch them mid-run)
    marks["keys"], marks["weights"] = keys, comfy_compat.hook_weights(run.guider.model_patcher)
    if step not in state.full:
        reason = _why_full(state, transformer_options, control, keys, x)
        if reason is None:
            state.stats.record(x.shape[0], partial=True)
            marks["kind"] = "partial"
            feature = torch.cat([state.features[k].rows.to(x.device) for k in keys])
            return branch, feature, state.features[keys[0]].transformer_index
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
            state.features[key] = KeptFeature((rows, *x.shape[1:]), chunk, kept["index"], marks.get("weights"))


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
        shallow = comfy_compat.ShallowPath(branch, feature, index)
        return comfy_compat.unet_forward(unet, x, timesteps, context, y, transformer_options, kwargs, shallow)
    options, kept = comfy_compat.keep_output_block_input(transformer_options, len(unet.output_blocks) - 1 - branch)
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
            **comfy_compat.schema_extras(
                io.Schema, search_aliases=["deepcache", "feature cache", "svd cache", "faster svd"]),
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
        config = CacheConfig(interval, branch, schedule, start_percent, end_percent)  # the core checks the settings
        require_svd(model)
        unet = model.model.diffusion_model
        if not comfy_compat.is_comfy_unet(unet):
            raise ValueError(f"model: {NAME} runs ComfyUI's UNetModel blocks, this SVD model's diffusion model is a "
                             f"{type(unet).__name__}")
        validate_branch(branch, len(unet.input_blocks))
        replaced = replaced_blocks(model)
        if replaced:
            log.warning("%s: another node replaced %s: the model is left alone (no cache)", NAME, ", ".join(replaced))
            return io.NodeOutput(model)
        patched = ModelPatch(model)
        patched.set_feature(FEATURE_CACHE, config, {WrappersMP.DIFFUSION_MODEL: cache_diffusion_model})
        return io.NodeOutput(patched.patcher)


NODES = [VCUTFeatureCache]
