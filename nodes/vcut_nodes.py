"""VCUT Patch Model and Cut Step Scheduler: ComfyUI glue around cut/ (object patches and sampler wrappers)."""
from __future__ import annotations

import comfy.model_base
import comfy.patcher_extension
from comfy_api.latest import io

from ..cut.attention import MODES, original_of, plan_patch
from ..cut.schedule import AFTER_CUT, CutSchedule, StepCounter, cut_step_from_fraction, schedule_summary
from .checks import log
from .compat import schema_extras

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


def attn2_replaced_blocks(model_options: dict) -> list:
    """Blocks for which another node set an attn2 replace patch (set_model_attn2_replace): ComfyUI's transformer
    block then calls attn2.to_q / to_k / to_v / to_out itself, so those blocks run the real attention."""
    return sorted(model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {}), key=str)


class AttentionReport:
    """OUTER_SAMPLE wrapper: says in the log, once per sampling run, which blocks run the real cross-attention
    because another node patched them (VCUT's output there equals the unpatched model plus that patch)."""

    def __call__(self, executor, *args, **kwargs):
        guider = getattr(executor, "class_obj", None)
        blocks = attn2_replaced_blocks(getattr(guider, "model_options", {}) or {})
        if blocks:
            log.info("VCUT Patch Model: %d block(s) have another node's attn2 replace patch and run the real "
                     "cross-attention there: %s", len(blocks), ", ".join(map(str, blocks)))
        return executor(*args, **kwargs)


class VCUTPatchModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTPatchModel",
            display_name="VCUT Patch Model",
            category="vcut/speed",
            **schema_extras(io.Schema, search_aliases=["vcut", "svd speed up", "faster svd", "cross attention cache"]),
            description=(
                "Training-free VCUT speed-up for SVD / SVD-XT / SVD-XT 1.1. SVD's cross-attention attends to a single "
                "token (the CLIP image embedding), so its output is the same vector for every pixel: it is computed "
                "once per model call for each image and broadcast, skipping to_q, to_k and the attention product. "
                "'exact' is the same computation as the unpatched model; 'paper' also removes temporal "
                "cross-attention as the VCUT paper does. Patches a copy of the model (same parameter keys, so LoRAs, "
                "merges and Save Model work as before); the input model is untouched."),
            inputs=[
                io.Model.Input("model", tooltip="An SVD image-to-video model (ImageOnlyCheckpointLoader)."),
                io.Combo.Input("mode", options=list(MODES), default="exact",
                               tooltip="exact: the same computation as the unpatched model (same video up to float "
                                       "rounding), one-token spatial and temporal cross-attention. paper: the VCUT "
                                       "paper's model, temporal cross-attention removed (slightly different video, "
                                       "fewer parameters read)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with VCUT cross-attention.")],
        )

    @classmethod
    def execute(cls, model, mode: str) -> io.NodeOutput:
        require_svd(model)
        patched = model.clone()

        def in_effect(name, live_module):
            """The attn2 in effect for THIS model: its own object patch, else the unpatched module. The live
            module tree can hold another clone's VCUT modules (ComfyUI keeps the last sampled model patched)."""
            key = f"diffusion_model.{name}"
            if key in patched.object_patches:
                return patched.object_patches[key]
            return original_of(patched.get_model_object(key))
        plan = plan_patch(patched.model.diffusion_model, mode, resolve=in_effect)
        for name, module in plan.replacements.items():
            patched.add_object_patch(f"diffusion_model.{name}", module)
        patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY)
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, AttentionReport())
        log.info("VCUT Patch Model (%s): %s", mode, plan.summary())
        blocks = attn2_replaced_blocks(patched.model_options)
        if blocks:
            log.info("VCUT Patch Model: blocks with another node's attn2 replace patch run the real cross-attention: "
                     "%s", ", ".join(map(str, blocks)))
        return io.NodeOutput(patched)


class CutRunState:
    """What one sampling run of Cut Step Scheduler needs: the step counter, the cut state, the positive
    conditioning of the guider (the list object its predict_noise hands to calc_cond_batch) and the uuids ComfyUI's
    sampler gave its entries (they survive the copies core context windows make), and the step of the model
    evaluation in progress."""

    def __init__(self, counter: StepCounter, run, positive):
        self.counter, self.run, self.positive = counter, run, positive
        self.positive_uuids = cond_uuids(positive)
        self.step = None
        self.easycache_moved = False


def cond_uuids(cond) -> frozenset:
    """The uuids of a conditioning's entries (comfy.sampler_helpers.convert_cond gives each entry one)."""
    return frozenset(c["uuid"] for c in cond if isinstance(c, dict) and c.get("uuid") is not None)


def positive_slot(conds, state: CutRunState):
    """Index of the guider's positive conditioning in a calc_cond_batch call, else None. Core context windows
    (comfy/context_windows.py, ComfyUI 0.8.0 and later) call calc_cond_batch once per window with copies of the
    conditionings resized to the window; a copy keeps its entries' uuids (a subset of them with
    split_conds_to_windows)."""
    for i, cond in enumerate(conds):
        if cond is None:
            continue
        uuids = cond_uuids(cond)
        if cond is state.positive or (uuids and uuids <= state.positive_uuids):
            return i
    return None


def window_of(model_options: dict):
    """The core context window a calc_cond_batch call covers (its frame indices), None outside context windows."""
    window = model_options.get("transformer_options", {}).get("context_window")
    return tuple(window.index_list) if window is not None and hasattr(window, "index_list") else None


def cut_step_predict_noise(executor, x, timestep, *args, **kwargs):
    """PREDICT_NOISE wrapper: the step of this model evaluation, counted once per evaluation (with core context
    windows calc_cond_batch runs once per window, and Heun's visit counting must see each evaluation once)."""
    model_options = args[0] if args else kwargs.get("model_options", {})
    state = model_options.get("transformer_options", {}).get(STEPS_OPTION)
    if state is not None:
        state.step = state.counter.step_of(float(timestep.max()))
    return executor(x, timestep, *args, **kwargs)


def cut_step_calc_cond_batch(executor, model, conds, x_in, timestep, model_options):
    """CALC_COND_BATCH wrapper: guided steps run every conditioning; from the cut step on, the positive one only."""
    state = model_options.get("transformer_options", {}).get(STEPS_OPTION)
    positive = None if state is None else positive_slot(conds, state)
    if positive is None or sum(c is not None for c in conds) < 2:
        return executor(model, conds, x_in, timestep, model_options)  # no guidance here, or a run we do not track
    run, part = state.run, window_of(model_options)
    step = state.step if state.step is not None else state.counter.step_of(float(timestep.max()))
    if run.is_guided(step):
        out = executor(model, conds, x_in, timestep, model_options)
        run.observe(step, out, positive, part)
        return out
    if not state.easycache_moved:
        state.easycache_moved = True
        follow_positive_with_easycache(model_options, conds[positive])
    only_positive = [c if i == positive else None for i, c in enumerate(conds)]
    cond_out = executor(model, only_positive, x_in, timestep, model_options)[positive]
    return run.unguided_outputs(cond_out, len(conds), positive, part)


# Fields of core EasyCache's holder (comfy_extras/nodes_easycache.py, 0.8.0 to 0.38.1) that the handoff writes.
EASYCACHE_FIELDS = ("first_cond_uuid", "output_prev_subsampled", "output_prev_norm")


def follow_positive_with_easycache(model_options: dict, positive: list) -> None:
    """Core EasyCache measures the change of its first batch's first conditioning, which with CFG is the
    unconditional one: after the cut it never runs again, and EasyCache would skip nothing. Point EasyCache at the
    positive conditioning and drop its output history (it belongs to the other branch), so it keeps skipping.
    The positive keeps its cached difference from the guided steps, so 0.30.0's EasyCache, which skips only when
    every conditioning of the batch has one (#12020), can skip the cut's one-conditioning batches.
    LazyCache (the same transformer_options key) works on the guider's prediction and needs nothing."""
    holder = model_options.get("transformer_options", {}).get("easycache")
    if holder is None or "LazyCache" in str(getattr(holder, "name", type(holder).__name__)):
        return
    missing = [name for name in EASYCACHE_FIELDS if not hasattr(holder, name)]
    if missing:
        log.warning("Cut Step Scheduler: this ComfyUI's EasyCache (%s) has no %s: it cannot be pointed at the "
                    "conditional branch at the cut%s", type(holder).__name__, ", ".join(missing),
                    ", so it may skip no step after the cut" if "first_cond_uuid" in missing else
                    "; its output history from the unconditional branch stays")
        if "first_cond_uuid" in missing:
            return
    uuids = [c.get("uuid") for c in positive if isinstance(c, dict)]
    if not uuids or holder.first_cond_uuid in uuids:
        return
    holder.first_cond_uuid = uuids[0]
    for name in EASYCACHE_FIELDS[1:]:
        if hasattr(holder, name):
            setattr(holder, name, None)
    log.info("Cut Step Scheduler: EasyCache now follows the conditional branch (the unconditional one is cut)")


# ComfyUI samplers whose second model call of a step is at the step's end sigma (the next step's start).
STEP_END_SAMPLERS = {"sample_heun", "sample_heunpp2"}


class StepTrackingWrapper:
    """SAMPLER_SAMPLE wrapper: one step counter and cut state per sampling run, kept in the run's
    transformer_options (never on this wrapper, which every clone of the model shares)."""

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
        conds = getattr(guider, "conds", None) or {}
        positive = conds.get("positive")
        guider_name = type(guider).__name__
        if positive is None or not any(conds.get(k) for k in conds if k != "positive"):
            log.info("Cut Step Scheduler: %s runs no guidance (no positive and second conditioning): nothing to "
                     "cut", guider_name)
            return executor(guider, sigmas, extra_args, *args, **kwargs)
        run = schedule.new_run()
        names = ", ".join(k for k in conds if conds.get(k))
        log.info("Cut Step Scheduler: %s (%s: %s; after the cut only 'positive' runs)",
                 schedule_summary(schedule.cut_step, counter.total_steps), guider_name, names)
        options = extra_args["model_options"].setdefault("transformer_options", {})
        options[STEPS_OPTION] = CutRunState(counter, run, positive)
        try:
            return executor(guider, sigmas, extra_args, *args, **kwargs)
        finally:
            options.pop(STEPS_OPTION, None)
            if run.cut_at < schedule.cut_step:
                log.info("Cut Step Scheduler: auto cut at step %d", run.cut_at)
            log.info("Cut Step Scheduler: %d guided and %d conditional-only model calls", run.guided_calls,
                     run.unguided_calls)


class VCUTCutStepScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTCutStepScheduler",
            display_name="Cut Step Scheduler",
            category="vcut/speed",
            **schema_extras(io.Schema, search_aliases=["cfg cut", "guidance schedule", "vcut cut"]),
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
                                      (comfy.patcher_extension.WrappersMP.PREDICT_NOISE, cut_step_predict_noise),
                                      (comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, cut_step_calc_cond_batch)):
            patched.remove_wrappers_with_key(wrapper_type, CUT_KEY)
            patched.add_wrapper_with_key(wrapper_type, CUT_KEY, wrapper)
        return io.NodeOutput(patched)


NODES = [VCUTPatchModel, VCUTCutStepScheduler]
