"""VCUT's guidance cut: classifier-free guidance only in the semantic-binding stage (no ComfyUI import).

VCUT paper Sec. III-D, Eq. 3-4: steps are numbered 1..N; steps 1..c-1 run CFG (Eq. 3,
eps = eps_u + w (eps_c - eps_u)); from step c on the unconditional branch is not computed and the prediction is
the conditional one (as with w = 1). c = 17 of 25 steps gives 16 guided + 9 unguided steps (the paper's 1288T).

Steps are read off the sampler's sigma schedule, not counted by calls (second-order samplers call the model
twice per step). A sigma alone is ambiguous for Heun-type samplers, whose second call of step k uses exactly the
sigma that starts step k+1; StepCounter is told when the sampler is of that kind.
"""
from __future__ import annotations

import dataclasses

import torch

from ..validation import SettingError

AFTER_CUT = ("drop", "reuse_delta")


def validate_cut_fraction(fraction: float) -> float:
    """cut_fraction: 0 (cut_step is used) or a fraction in (0, 1] of the run's steps that keep guidance."""
    if fraction != 0.0 and not (0.0 < fraction <= 1.0):  # NaN fails both
        raise SettingError("cut_fraction", f"cut_fraction must be 0 (use cut_step) or in (0, 1], got {fraction}")
    return float(fraction)


def cut_step_from_fraction(fraction: float, total_steps: int) -> int:
    """c for a fraction of the schedule: the first round(fraction * N) steps are guided (0.64 of 25 -> c = 17)."""
    if validate_cut_fraction(fraction) == 0.0:
        raise SettingError("cut_fraction", "cut_fraction is 0: the cut step is cut_step, not a fraction of the steps")
    return int(round(fraction * total_steps)) + 1


def validate_cut_step(cut_step: int) -> int:
    if int(cut_step) != cut_step or cut_step < 1:
        raise SettingError("cut_step", f"cut_step must be a whole number >= 1 (steps are numbered 1..N), got "
                                       f"{cut_step}")
    return int(cut_step)


def schedule_summary(cut_step: int, total_steps: int) -> str:
    """One line for the log: what this cut does on a schedule of `total_steps` steps."""
    guided = min(cut_step - 1, total_steps)
    if cut_step > total_steps:
        return f"cut step {cut_step} > {total_steps} steps: nothing is cut, all {total_steps} steps use guidance"
    if cut_step == 1:
        return f"cut step 1: no guidance at all ({total_steps} conditional-only steps)"
    return (f"cut step {cut_step}: steps 1-{guided} use guidance, steps {cut_step}-{total_steps} "
            f"({total_steps - guided}) run the conditional branch only")


class StepCounter:
    """Maps a model call's sigma to its step number 1..N on the sampling schedule `sigmas` (N + 1 values).

    A call lies in step k when its sigma is in (sigmas[k], sigmas[k-1]] (1-based). Samplers that evaluate the
    model again at the END of a step (Heun: its correction at sigmas[k]) visit each inner schedule sigma twice:
    the first visit is the end of step k, the second the start of step k+1.
    """

    def __init__(self, sigmas: torch.Tensor, evaluates_step_end: bool = False, rtol: float = 1e-4):
        self.sigmas = [float(s) for s in sigmas.flatten()]
        self.total_steps = len(self.sigmas) - 1
        self.evaluates_step_end = evaluates_step_end
        self.rtol = rtol
        self._visits: dict[int, int] = {}

    def step_of(self, sigma: float) -> int:
        """Step number (1-based) of a model call at `sigma`."""
        starts = self.sigmas[:-1]
        # index: the last step start at or above sigma; on_start: sigma is that start (within rtol)
        index = min(max(sum(s >= sigma * (1 - self.rtol) for s in starts) - 1, 0), self.total_steps - 1)
        on_start = index > 0 and abs(starts[index] - sigma) <= self.rtol * max(abs(sigma), 1e-12)
        if not (self.evaluates_step_end and on_start):
            return index + 1
        visits = self._visits.get(index, 0)
        self._visits[index] = visits + 1
        return index + (1 if visits else 0)


@dataclasses.dataclass
class CutSchedule:
    """When to stop guidance within one sampling run, and what to do after.

    cut_step: steps >= cut_step are unguided. auto_threshold > 0: also cut from the step after the first guided
    step whose relative guidance delta |cond - uncond| / |cond| falls below it. after_cut: "drop" (the paper:
    prediction = conditional) or "reuse_delta" (prediction = conditional - last measured delta as the
    unconditional, so CFG keeps applying the last guidance direction at no UNet cost).
    """
    cut_step: int
    auto_threshold: float = 0.0
    after_cut: str = "drop"
    auto_min_step: int = 2

    def __post_init__(self):
        validate_cut_step(self.cut_step)
        if self.after_cut not in AFTER_CUT:
            raise SettingError("after_cut", f"after_cut must be one of {AFTER_CUT}, got {self.after_cut!r}")
        if not (self.auto_threshold >= 0.0):
            raise SettingError("auto_threshold", f"auto_threshold must be >= 0 (0 turns auto off), got "
                                                 f"{self.auto_threshold}")

    def new_run(self) -> "CutRun":
        return CutRun(self)


class CutRun:
    """The state of one sampling run: the step at which guidance stopped, the last guidance deltas, call counts.

    A guided call evaluates every conditioning of the guider (CFG: [positive, negative]; DualCFGGuider: three);
    after the cut only the positive one runs, and every other slot is filled so that the guider's formula gives the
    positive prediction (drop, as cfg 1) or keeps the last measured difference to it (reuse_delta).

    `part` names the part of the latent a call sees (None: all of it; with context windows the window's frames):
    the deltas kept for reuse are per part, so each window reuses its own."""

    def __init__(self, schedule: CutSchedule):
        self.schedule = schedule
        self.cut_at = schedule.cut_step
        self.last_deltas: dict[object, list[torch.Tensor]] = {}
        self.guided_calls = 0
        self.unguided_calls = 0

    def is_guided(self, step: int) -> bool:
        return step < self.cut_at

    def observe(self, step: int, outputs: list[torch.Tensor], positive: int, part=None) -> None:
        """Record a guided call's outputs (one per conditioning; `positive` indexes the positive one): keeps the
        deltas positive - other for reuse, and applies the auto rule (VCUT Eq. 3's guidance term, relative)."""
        self.guided_calls += 1
        cond_out = outputs[positive]
        deltas = [cond_out - out for out in outputs]
        if self.schedule.after_cut == "reuse_delta":
            self.last_deltas[part] = deltas
        threshold = self.schedule.auto_threshold
        if threshold > 0 and step >= self.schedule.auto_min_step:
            largest = max(float(d.norm()) for d in deltas)
            if largest / max(float(cond_out.norm()), 1e-12) < threshold:
                self.cut_at = min(self.cut_at, step + 1)

    def unguided_outputs(self, cond_out: torch.Tensor, count: int, positive: int, part=None) -> list[torch.Tensor]:
        """The `count` outputs to hand to the guider after the cut, from the positive prediction alone (VCUT Eq. 4):
        every slot = cond (drop: any CFG formula then gives cond) or cond - last delta of that slot (reuse_delta:
        CFG gives cond + (w - 1) delta)."""
        self.unguided_calls += 1
        deltas = self.last_deltas.get(part)
        if deltas is None or len(deltas) != count or deltas[positive].shape != cond_out.shape:
            return [cond_out] * count
        return [cond_out if i == positive else cond_out - delta for i, delta in enumerate(deltas)]
