"""Cut Step Scheduler's sampler wrappers on a cloned ModelPatcher (beside anchor_patch.py, the anchoring ones):
per sampling run a CutRunState in the run's transformer_options (SAMPLER_SAMPLE, StepTrackingWrapper), the step of
each model evaluation read off the sigma schedule (PREDICT_NOISE), the unconditional rows dropped from the cut step
on (CALC_COND_BATCH, VCUT Eq. 4), core context windows and DualCFGGuider handled, core EasyCache pointed at the
conditional branch at the cut."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from comfy.patcher_extension import WrapperExecutor

from ..cut.schedule import CutRun, CutSchedule, StepCounter, cut_step_from_fraction, schedule_summary
from .checks import log

if TYPE_CHECKING:
    from comfy.model_base import BaseModel
    from comfy.samplers import CFGGuider

STEPS_OPTION = "vcut_step_counter"
# ComfyUI samplers whose second model call of a step is at the step's end sigma (the next step's start).
STEP_END_SAMPLERS = {"sample_heun", "sample_heunpp2"}
# Fields of core EasyCache's holder (comfy_extras/nodes_easycache.py, 0.8.0 to 0.38.1) that the handoff writes.
EASYCACHE_FIELDS = ("first_cond_uuid", "output_prev_subsampled", "output_prev_norm")


class CutRunState:
    """What one sampling run of Cut Step Scheduler needs: the step counter, the cut state, the positive
    conditioning of the guider (the list object its predict_noise hands to calc_cond_batch) and the uuids ComfyUI's
    sampler gave its entries (they survive the copies core context windows make), and the step of the model
    evaluation in progress."""

    def __init__(self, counter: StepCounter, run: CutRun, positive: list[dict[str, Any]]) -> None:
        self.counter, self.run, self.positive = counter, run, positive
        self.positive_uuids = cond_uuids(positive)
        self.step = None
        self.easycache_moved = False


def cond_uuids(cond: list[dict[str, Any]]) -> frozenset:
    """The uuids of a conditioning's entries (comfy.sampler_helpers.convert_cond gives each entry one)."""
    return frozenset(c["uuid"] for c in cond if isinstance(c, dict) and c.get("uuid") is not None)


def positive_slot(conds: list[list[dict[str, Any]] | None], state: CutRunState) -> int | None:
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


def window_of(model_options: dict) -> tuple[int, ...] | None:
    """The core context window a calc_cond_batch call covers (its frame indices), None outside context windows."""
    window = model_options.get("transformer_options", {}).get("context_window")
    return tuple(window.index_list) if window is not None and hasattr(window, "index_list") else None


def cut_step_predict_noise(executor: WrapperExecutor, x: torch.Tensor, timestep: torch.Tensor, *args: Any,
                           **kwargs: Any) -> torch.Tensor:
    """PREDICT_NOISE wrapper: the step of this model evaluation, counted once per evaluation (with core context
    windows calc_cond_batch runs once per window, and Heun's visit counting must see each evaluation once)."""
    model_options = args[0] if args else kwargs.get("model_options", {})
    state = model_options.get("transformer_options", {}).get(STEPS_OPTION)
    if state is not None:
        state.step = state.counter.step_of(float(timestep.max()))
    return executor(x, timestep, *args, **kwargs)


def cut_step_calc_cond_batch(executor: WrapperExecutor, model: BaseModel, conds: list[list[dict[str, Any]] | None],
                             x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict) -> list[torch.Tensor]:
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


class StepTrackingWrapper:
    """SAMPLER_SAMPLE wrapper: one step counter and cut state per sampling run, kept in the run's
    transformer_options (never on this wrapper, which every clone of the model shares)."""

    def __init__(self, schedule: CutSchedule, cut_fraction: float) -> None:
        self.schedule = schedule
        self.cut_fraction = cut_fraction

    def __call__(self, executor: WrapperExecutor, guider: CFGGuider, sigmas: torch.Tensor, extra_args: dict[str, Any],
                 *args: Any, **kwargs: Any) -> torch.Tensor:
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
