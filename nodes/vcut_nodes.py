"""VCUT Patch Model and Cut Step Scheduler: ComfyUI glue around cut/ (object patches and sampler wrappers)."""
from __future__ import annotations

import logging

import comfy.model_base
import comfy.patcher_extension
from comfy_api.latest import io

from ..cut.attention import MODES, CachedCrossAttention, plan_patch
from ..cut.schedule import AFTER_CUT, CutSchedule, StepCounter, cut_step_from_fraction, schedule_summary

log = logging.getLogger("vcut")
WRAPPER_KEY = "vcut"
CUT_KEY = "vcut_cut_step"
STEPS_OPTION = "vcut_step_counter"


def require_svd(model, input_name: str = "model") -> None:
    """Refuse a MODEL that is not Stable Video Diffusion, naming what it is."""
    base = model.model
    if not isinstance(base, comfy.model_base.SVD_img2vid):
        unet = type(getattr(base, "diffusion_model", None)).__name__
        raise ValueError(f"{input_name}: VCUT needs a Stable Video Diffusion model (SVD, SVD-XT, SVD-XT 1.1, loaded "
                         f"with ImageOnlyCheckpointLoader), got {type(base).__name__} with a {unet} diffusion model")


class CacheLifetime:
    """OUTER_SAMPLE wrapper: each sampling run starts and ends with empty VCUT caches, so no vectors outlive it."""

    def __init__(self, modules):
        self.modules = list(modules)

    def __call__(self, executor, *args, **kwargs):
        for module in self.modules:
            module.clear_cache()
        try:
            return executor(*args, **kwargs)
        finally:
            for module in self.modules:
                module.clear_cache()


class VCUTPatchModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTPatchModel",
            display_name="VCUT Patch Model",
            category="vcut/speed",
            description=(
                "Training-free VCUT speed-up for SVD / SVD-XT / SVD-XT 1.1. SVD's cross-attention attends to a single "
                "token (the CLIP image embedding), so its output is the same vector for every pixel: it is computed "
                "once per image and reused on every step, skipping to_q, to_k and the attention product. "
                "'exact' gives the same video as the unpatched model; 'paper' also removes temporal cross-attention "
                "as the VCUT paper does. Patches a copy of the model; the input model is untouched."),
            inputs=[
                io.Model.Input("model", tooltip="An SVD image-to-video model (ImageOnlyCheckpointLoader)."),
                io.Combo.Input("mode", options=list(MODES), default="exact",
                               tooltip="exact: same output as the unpatched model, cached spatial and temporal "
                                       "cross-attention. paper: the VCUT paper's model, temporal cross-attention "
                                       "removed (slightly different video, fewer parameters)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with VCUT cross-attention.")],
        )

    @classmethod
    def execute(cls, model, mode: str) -> io.NodeOutput:
        require_svd(model)
        patched = model.clone()
        unet = patched.model.diffusion_model

        def in_effect(name, module):
            return patched.object_patches.get(f"diffusion_model.{name}", module)
        plan = plan_patch(unet, mode, resolve=in_effect)
        for name, module in plan.replacements.items():
            patched.add_object_patch(f"diffusion_model.{name}", module)
        cached = [m for m in patched.object_patches.values() if isinstance(m, CachedCrossAttention)]
        patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY)
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY,
                                     CacheLifetime(cached))
        log.info("VCUT Patch Model (%s): %s", mode, plan.summary())
        return io.NodeOutput(patched)


class CutStepWrapper:
    """CALC_COND_BATCH wrapper: guided steps run cond+uncond; from the cut step on, the cond rows only."""

    def __init__(self, schedule: CutSchedule):
        self.schedule = schedule

    def __call__(self, executor, model, conds, x_in, timestep, model_options):
        options = model_options.get("transformer_options", {})
        state = options.get(STEPS_OPTION)
        if state is None or len(conds) != 2 or conds[1] is None:
            return executor(model, conds, x_in, timestep, model_options)  # no CFG here, or outside a run we track
        counter, run = state
        step = counter.step_of(float(timestep.max()))
        if run.is_guided(step):
            out = executor(model, conds, x_in, timestep, model_options)
            run.observe(step, out[0], out[1])
            return out
        cond_out = executor(model, [conds[0], None], x_in, timestep, model_options)[0]
        return run.unguided_outputs(cond_out)


# ComfyUI samplers whose second model call of a step is at the step's end sigma (the next step's start).
STEP_END_SAMPLERS = {"sample_heun", "sample_heunpp2"}


class StepTrackingWrapper:
    """SAMPLER_SAMPLE wrapper: one step counter and cut state per sampling run."""

    def __init__(self, schedule: CutSchedule, cut_fraction: float):
        self.schedule = schedule
        self.cut_fraction = cut_fraction

    def __call__(self, executor, guider, sigmas, extra_args, *args, **kwargs):
        sampler_function = getattr(getattr(executor, "class_obj", None), "sampler_function", None)
        counter = StepCounter(sigmas, getattr(sampler_function, "__name__", "") in STEP_END_SAMPLERS)
        schedule = self.schedule
        if self.cut_fraction > 0:
            schedule = CutSchedule(cut_step_from_fraction(self.cut_fraction, counter.total_steps),
                                   schedule.auto_threshold, schedule.after_cut)
        run = schedule.new_run()
        log.info("Cut Step Scheduler: %s", schedule_summary(schedule.cut_step, counter.total_steps))
        options = extra_args["model_options"].setdefault("transformer_options", {})
        options[STEPS_OPTION] = (counter, run)
        try:
            return executor(guider, sigmas, extra_args, *args, **kwargs)
        finally:
            options.pop(STEPS_OPTION, None)
            if run.cut_at < schedule.cut_step:
                log.info("Cut Step Scheduler: auto cut at step %d", run.cut_at)


class VCUTCutStepScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTCutStepScheduler",
            display_name="Cut Step Scheduler",
            category="vcut/speed",
            description=(
                "VCUT's guidance cut: classifier-free guidance only in the first steps (the semantic-binding stage). "
                "Steps 1..c-1 run the conditional and unconditional branches; from step c on the unconditional branch "
                "is not computed at all and the prediction is the conditional one (as cfg 1), halving the UNet work "
                "of those steps. Steps are counted on the sampler's sigma schedule, so second-order samplers and "
                "denoise < 1 work. Works with KSampler, KSamplerAdvanced, SamplerCustom(Advanced) and behind "
                "VideoLinearCFGGuidance / VideoTriangleCFGGuidance. Any model; made for SVD."),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (SVD, optionally after VCUT Patch Model)."),
                io.Int.Input("cut_step", default=17, min=1, max=10000,
                             tooltip="c: steps 1..c-1 use guidance, steps c..N do not (steps numbered from 1 on the "
                                     "schedule the sampler runs). 17 of 25 = 16 guided + 9 unguided steps, the paper's "
                                     "setting. 1 = no guidance at all; larger than the step count = nothing cut."),
                io.Float.Input("cut_fraction", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = use cut_step. Otherwise the fraction of the steps that keep guidance: "
                                       "c = round(fraction x steps) + 1, e.g. 0.64 of 25 steps gives c = 17."),
                io.Combo.Input("after_cut", options=list(AFTER_CUT), default="drop",
                               tooltip="drop: after the cut the prediction is the conditional one (the paper). "
                                       "reuse_delta: keep applying the last measured guidance (cond - uncond) "
                                       "scaled by cfg, at no extra UNet cost."),
                io.Float.Input("auto_threshold", default=0.0, min=0.0, max=1.0, step=0.005,
                               tooltip="0 = off. Otherwise also cut as soon as the relative difference between the "
                                       "conditional and unconditional predictions, |cond-uncond|/|cond|, falls below "
                                       "this value (measured from step 2 on)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the guidance cut.")],
        )

    @classmethod
    def execute(cls, model, cut_step: int, cut_fraction: float, after_cut: str,
                auto_threshold: float) -> io.NodeOutput:
        if cut_fraction != 0.0 and not (0.0 < cut_fraction <= 1.0):
            raise ValueError(f"cut_fraction must be 0 (use cut_step) or in (0, 1], got {cut_fraction}")
        schedule = CutSchedule(cut_step, auto_threshold, after_cut)
        patched = model.clone()
        for wrapper_type, wrapper in ((comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE,
                                       StepTrackingWrapper(schedule, cut_fraction)),
                                      (comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, CutStepWrapper(schedule))):
            patched.remove_wrappers_with_key(wrapper_type, CUT_KEY)
            patched.add_wrapper_with_key(wrapper_type, CUT_KEY, wrapper)
        return io.NodeOutput(patched)


NODES = [VCUTPatchModel, VCUTCutStepScheduler]
