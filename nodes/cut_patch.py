"""Cut Step Scheduler on the sampling-run layer (run.py): its settings (CutConfig, attached to the clone), its
per-run state (CutRunState), and its one wrapper (CALC_COND_BATCH): the unconditional rows dropped from the cut
step on (VCUT Eq. 4) at the step the run layer tracks, deltas kept per part of the latent (core context window,
MultiGPU device), DualCFGGuider handled, core EasyCache pointed at the conditional branch at the cut."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from comfy.patcher_extension import WrapperExecutor

from ..cut.schedule import CutSchedule, cut_step_from_fraction, schedule_summary, validate_cut_fraction
from . import comfy_compat
from .log import log
from .patch_layer import CUT_STEP
from .run import FeatureConfig, FeatureState, SamplingRun, current_run

_UNTOLD = object()  # the part of a call the run layer could not tell: its deltas are never kept

if TYPE_CHECKING:
    from comfy.model_base import BaseModel


@dataclasses.dataclass(frozen=True)
class CutConfig(FeatureConfig):
    """Cut Step Scheduler's settings (attached to the clone; VCUT Eq. 4): cut_step, or cut_fraction > 0 of the
    run's steps; what to do after the cut; the auto threshold."""
    name: ClassVar[str] = "Cut Step Scheduler"
    cut_step: int
    cut_fraction: float = 0.0
    after_cut: str = "drop"
    auto_threshold: float = 0.0

    def __post_init__(self) -> None:  # the core's checks (SettingError naming the setting, as the node's input)
        CutSchedule(self.cut_step, self.auto_threshold, self.after_cut)
        validate_cut_fraction(self.cut_fraction)

    def new_state(self, run: SamplingRun) -> CutRunState | None:
        cut_step = self.cut_step
        if self.cut_fraction > 0:
            cut_step = cut_step_from_fraction(self.cut_fraction, run.total_steps)
        schedule = CutSchedule(cut_step, self.auto_threshold, self.after_cut)
        guider = run.guider
        conds = getattr(guider, "conds", None) or {}
        positive = conds.get("positive")
        guider_name = type(guider).__name__
        if positive is None or not any(conds.get(k) for k in conds if k != "positive"):
            log.info("Cut Step Scheduler: %s runs no guidance (no positive and second conditioning): nothing to "
                     "cut", guider_name)
            return None
        names = ", ".join(k for k in conds if conds.get(k))
        log.info("Cut Step Scheduler: %s (%s: %s; after the cut only 'positive' runs)",
                 schedule_summary(schedule.cut_step, run.total_steps), guider_name, names)
        return CutRunState(schedule, positive)


class CutRunState(FeatureState):
    """What one sampling run of Cut Step Scheduler keeps: the cut state (its deltas per part of the latent) and the
    uuids ComfyUI's sampler gave the positive conditioning's entries (they survive the copies core context windows
    make)."""

    def __init__(self, schedule: CutSchedule, positive: list[dict[str, Any]]) -> None:
        self.schedule = schedule
        self.run = schedule.new_run()
        self.positive = positive
        self.positive_uuids = cond_uuids(positive)
        self.easycache_moved = False

    def reset(self) -> None:
        self.run.last_deltas.clear()

    def report(self) -> str:
        run = self.run
        auto = f", auto cut at step {run.cut_at}" if run.cut_at < self.schedule.cut_step else ""
        return (f"Cut Step Scheduler: {run.guided_calls} guided and {run.unguided_calls} conditional-only model "
                f"calls{auto}")


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


def cut_step_calc_cond_batch(executor: WrapperExecutor, model: BaseModel, conds: list[list[dict[str, Any]] | None],
                             x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict) -> list[torch.Tensor]:
    """CALC_COND_BATCH wrapper: guided steps run every conditioning; from the cut step on, the positive one only."""
    transformer_options = model_options.get("transformer_options", {})
    sampling = current_run(transformer_options)
    state = None if sampling is None else sampling.state(CUT_STEP)
    positive = None if state is None else positive_slot(conds, state)
    if positive is None or sum(c is not None for c in conds) < 2:
        return executor(model, conds, x_in, timestep, model_options)  # no guidance here, or a run we do not track
    run, step = state.run, sampling.step_at(timestep)
    # the deltas reused after the cut are kept per part of the latent (core context window, device); where the
    # layer cannot tell the part, this call keeps and reuses none (the part None is never stored)
    key = sampling.part_key(transformer_options, int(x_in.shape[0]), CutConfig.name)
    part = _UNTOLD if key is None else (key.window, key.device)
    if run.is_guided(step):
        out = executor(model, conds, x_in, timestep, model_options)
        run.observe(step, out, positive, part)
        run.last_deltas.pop(_UNTOLD, None)
        return out
    if not state.easycache_moved:
        state.easycache_moved = True
        follow_positive_with_easycache(model_options, conds[positive])
    only_positive = [c if i == positive else None for i, c in enumerate(conds)]
    cond_out = executor(model, only_positive, x_in, timestep, model_options)[positive]
    sampling.dropped_rows += int(x_in.shape[0]) * (sum(c is not None for c in conds) - 1)
    return run.unguided_outputs(cond_out, len(conds), positive, part)


def follow_positive_with_easycache(model_options: dict, positive: list) -> None:
    """Core EasyCache measures the change of its first batch's first conditioning, which with CFG is the
    unconditional one: after the cut it never runs again, and EasyCache would skip nothing. Point EasyCache at the
    positive conditioning and drop its output history (it belongs to the other branch), so it keeps skipping.
    The positive keeps its cached difference from the guided steps, so 0.30.0's EasyCache, which skips only when
    every conditioning of the batch has one (#12020), can skip the cut's one-conditioning batches.
    LazyCache (the same transformer_options key) works on the guider's prediction and needs nothing."""
    holder = comfy_compat.easycache_holder(model_options.get("transformer_options", {}))
    if holder is None:
        return
    missing = comfy_compat.easycache_missing(holder)
    if missing:
        log.warning("Cut Step Scheduler: this ComfyUI's EasyCache (%s) has no %s: it cannot be pointed at the "
                    "conditional branch at the cut%s", type(holder).__name__, ", ".join(missing),
                    ", so it may skip no step after the cut" if "first_cond_uuid" in missing else
                    "; its output history from the unconditional branch stays")
        if "first_cond_uuid" in missing:
            return
    uuids = [c.get("uuid") for c in positive if isinstance(c, dict)]
    if not uuids or not comfy_compat.easycache_follow(holder, uuids):
        return
    log.info("Cut Step Scheduler: EasyCache now follows the conditional branch (the unconditional one is cut)")
