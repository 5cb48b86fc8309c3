"""UNet Feature Cache (DeepCache for SVD): ComfyUI glue around cut/feature_cache.py.

Three wrappers on a cloned ModelPatcher, no monkey-patching (all exist in ComfyUI 0.8.0 and later):
- OUTER_SAMPLE: one CacheRun per sampling run, in the run's transformer_options (never on the shared wrapper);
- CALC_COND_BATCH: the step number of this model evaluation, from the sampler's sigma schedule;
- DIFFUSION_MODEL: a full step runs ComfyUI's own UNetModel._forward and keeps, per conditioning row, the feature
  that enters output block L-1-branch (through an output_block_patch, ComfyUI's own hook there); a partial step
  runs ComfyUI's own input_blocks[0..branch] and output_blocks[L-1-branch..] through forward_timestep_embed with
  SVD's num_video_frames / image_only_indicator / time_context, so every in-block patch still applies.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import comfy.model_patcher
import torch
from comfy.ldm.modules.diffusionmodules import openaimodel
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrapperExecutor, WrappersMP
from comfy_api.latest import io

from ..cut.feature_cache import SCHEDULES, RunStats, full_steps, schedule_summary, validate, validate_branch
from ..cut.schedule import StepCounter
from .checks import log, require_svd
from .compat import schema_extras
from .cost_report import RunCost, report
from .cut_patch import STEP_END_SAMPLERS
from .patch_layer import FEATURE_CACHE, ModelPatch

if TYPE_CHECKING:
    from comfy.model_base import BaseModel

RUN_OPTION = "vcut_feature_cache_run"
NAME = "UNet Feature Cache"
# Model-level patches that a partial step cannot honour: they act on the blocks' outputs or skips in an order the
# skipped deep blocks are part of. A step that has them runs fully.
UNHONOURED_PATCHES = ("input_block_patch", "input_block_patch_after_skip", "output_block_patch")
_REPLACED_BLOCK = re.compile(r"^diffusion_model(\.(input_blocks|middle_block|output_blocks|out)(\.\d+)?)?$")


class CacheRun:
    """One sampling run: which steps are full, the step being evaluated, the kept features, what was done."""

    def __init__(self, settings: dict, sigmas: torch.Tensor, evaluates_step_end: bool) -> None:
        self.settings = settings
        self.counter = StepCounter(sigmas, evaluates_step_end)
        self.full = set(full_steps(self.counter.total_steps, settings["interval"], settings["schedule"],
                                   settings["start_percent"], settings["end_percent"]))
        self.step = 1
        self.features: dict = {}  # conditioning key -> (input rows shape, feature rows, transformer_index)
        self.stats = RunStats()
        self.cost = RunCost()


class CacheSampleWrapper:
    """OUTER_SAMPLE wrapper: a fresh CacheRun in a copy of the guider's model_options for this run (as core
    EasyCache does), the run's report at the end."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def __call__(self, executor: WrapperExecutor, *args: Any, **kwargs: Any) -> torch.Tensor:
        guider = executor.class_obj
        sampler, sigmas = args[2], args[3]  # outer_sample(noise, latent_image, sampler, sigmas, ...)
        step_end = getattr(getattr(sampler, "sampler_function", None), "__name__", "") in STEP_END_SAMPLERS
        run = CacheRun(self.settings, sigmas, step_end)
        original = guider.model_options
        guider.model_options = comfy.model_patcher.create_model_options_clone(original)
        guider.model_options.setdefault("transformer_options", {})[RUN_OPTION] = run
        s = self.settings
        log.info("%s (interval %d, branch %d, %s): %s", NAME, s["interval"], s["branch"], s["schedule"],
                 schedule_summary(run.counter.total_steps, sorted(run.full)))
        try:
            return executor(*args, **kwargs)
        finally:
            guider.model_options = original
            report(NAME, run.stats.summary(), run.cost)


def cache_calc_cond_batch(executor: WrapperExecutor, model: BaseModel, conds: list[list[dict[str, Any]] | None],
                          x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict) -> list[torch.Tensor]:
    """CALC_COND_BATCH wrapper: the step of this model evaluation (once per evaluation, so a Heun step's two
    calls at one sigma are told apart as the cut tells them)."""
    run = model_options.get("transformer_options", {}).get(RUN_OPTION)
    if run is not None:
        run.step = run.counter.step_of(float(timestep.max()))
    return executor(model, conds, x_in, timestep, model_options)


def _chunk_keys(transformer_options: dict, rows: int) -> list | None:
    """One key per conditioning chunk of the batch (its uuid, else cond/uncond), or None when not told apart."""
    keys = transformer_options.get("uuids") or transformer_options.get("cond_or_uncond")
    if not keys or rows % len(keys) or len(set(keys)) != len(keys):
        return None
    return list(keys)


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


def _why_full(run: CacheRun, transformer_options: dict, control: dict[str, Any] | None, keys: list | None,
              x: torch.Tensor) -> str | None:
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
    if any(k not in run.features or run.features[k][0] != (rows, *x.shape[1:]) for k in keys):
        return "no kept feature for this batch"
    return None


@torch.compiler.disable
def _plan(run: CacheRun, transformer_options: dict, control: dict[str, Any] | None,
          x: torch.Tensor) -> tuple[int, torch.Tensor | None, int]:
    """(branch, the kept feature for a partial call or None for a full one, its transformer_index), with the run's
    bookkeeping. Kept out of torch.compile's graphs (core TorchCompileModel compiles the UNet, this wrapper included):
    it reads and writes the run's Python state, which a graph would bake in or recompile for at every step."""
    branch = run.settings["branch"]
    keys = _chunk_keys(transformer_options, x.shape[0])
    if run.step not in run.full:
        reason = _why_full(run, transformer_options, control, keys, x)
        if reason is None:
            run.stats.record(x.shape[0], partial=True)
            return branch, torch.cat([run.features[k][1] for k in keys]), run.features[keys[0]][2]
        if reason not in run.stats.forced:
            log.info("%s: step %d runs the whole UNet: %s", NAME, run.step, reason)
        run.stats.force(reason)
    run.stats.record(x.shape[0], partial=False)
    return branch, None, 0


@torch.compiler.disable
def _keep(run: CacheRun, transformer_options: dict, kept: dict, x: torch.Tensor) -> None:
    """Keep a full call's feature per conditioning chunk (outside compiled graphs, as _plan; the chunk keys are found
    again here rather than handed through the compiled code, where dynamo would guard on their values)."""
    keys = _chunk_keys(transformer_options, x.shape[0])
    if keys is not None and "h" in kept:
        rows = x.shape[0] // len(keys)
        for key, chunk in zip(keys, kept["h"].split(rows), strict=True):
            run.features[key] = ((rows, *x.shape[1:]), chunk, kept["index"])


def cache_diffusion_model(executor: WrapperExecutor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """DIFFUSION_MODEL wrapper: the full or the partial UNet call of this step."""
    x, timesteps, context, y, control, transformer_options = args[:6]  # UNetModel.forward's positional call
    run = transformer_options.get(RUN_OPTION) if isinstance(transformer_options, dict) else None
    if run is None:
        return executor(*args, **kwargs)
    unet = executor.class_obj
    branch, feature, index = _plan(run, transformer_options, control, x)
    if feature is not None:
        return run.cost.call("partial", x.shape[0], lambda: _partial_forward(
            unet, x, timesteps, context, y, transformer_options, kwargs, branch, feature, index))
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
    out = run.cost.call("full", x.shape[0], lambda: executor(*args[:5], options, *args[6:], **kwargs))
    _keep(run, transformer_options, kept, x)
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
                "reports. A cached feature holds the weights of the step that computed it (hook keyframes "
                "switching mid-run take effect at the next full step)."),
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
        settings = {"interval": interval, "branch": branch, "schedule": schedule, "start_percent": start_percent,
                    "end_percent": end_percent}
        patched = ModelPatch(model)
        patched.set_wrappers(FEATURE_CACHE, {WrappersMP.OUTER_SAMPLE: CacheSampleWrapper(settings),
                                             WrappersMP.CALC_COND_BATCH: cache_calc_cond_batch,
                                             WrappersMP.DIFFUSION_MODEL: cache_diffusion_model})
        return io.NodeOutput(patched.patcher)


NODES = [VCUTFeatureCache]
