"""DeepCache for SVD's UNet (no ComfyUI): which steps run the whole UNet, the MACs of a cached video, a run's counts.

DeepCache (Ma, Fang, Wang, CVPR 2024, arXiv 2312.00858), Sec. 3.2: the UNet's skip branches are numbered from the
shallowest; at a full step the feature that enters the up-path at skip branch m is kept, and at the next N-1 steps
("partial" steps) only the down layers D_0..D_m and the up layers U_m..U_0 run, with the kept feature in place of
everything below branch m:  U_m(Concat(D_m(...), F_cache)).

Layers are counted as ComfyUI's UNetModel holds them: input layer i produces skip i (layer 0 is the input conv),
output layer j takes skip L-1-j. Branch m therefore runs input layers 0..m and output layers L-1-m..L-1; branch 0
(input conv + the last output layer) saves the most. The partial step itself runs in the UNet Feature Cache node
(nodes/); the same step on diffusers' UNetSpatioTemporalConditionModel (the same layers in the same order), the
reference of the MAC tables and core tests, is bench/diffusers_reference.py.
"""
from __future__ import annotations

import dataclasses
import math

from ..cut.accounting import MacCount
from ..validation import SettingError

SCHEDULES = ("uniform", "non-uniform")
# DeepCache's non-uniform 1:N schedule for 50 PLMS steps: center c = 15, power p = 1.4; c scales with the steps.
NONUNIFORM_CENTER = 0.3
NONUNIFORM_POWER = 1.4


def validate(interval: int, schedule: str, start_percent: float, end_percent: float) -> None:
    """The cache's schedule settings (SettingError naming the first one out of range)."""
    if int(interval) != interval or interval < 1:
        raise SettingError("interval", f"interval must be a whole number >= 1 (1 = every step runs the whole UNet), "
                                       f"got {interval}")
    if schedule not in SCHEDULES:
        raise SettingError("schedule", f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
        if not (0.0 <= value <= 1.0):
            raise SettingError(name, f"{name} must be in [0, 1] (a fraction of the run's steps), got {value}")
    if start_percent > end_percent:
        raise SettingError("start_percent", f"start_percent ({start_percent}) must not be larger than end_percent "
                                            f"({end_percent})")


def validate_branch(branch: int, branches: int) -> None:
    if int(branch) != branch or not (0 <= branch < branches):
        raise SettingError("branch", f"branch must be a skip branch of this UNet, 0..{branches - 1} (0 = shallowest, "
                                     f"the biggest saving), got {branch}")


def nonuniform_full_steps(total_steps: int, interval: int, center: float = NONUNIFORM_CENTER,
                          power: float = NONUNIFORM_POWER) -> list[int]:
    """0-based full steps of DeepCache's non-uniform 1:N schedule (Sec. 3.3): k = ceil(T / N) full steps at
    l_i = sign(x_i) |x_i|^p + c,  x = linspace(-c^(1/p), (T - c)^(1/p), k + 1)  (the last point, T, dropped),
    denser around step c where the features change fastest. As DeepCache's code does, p is lowered by 0.02 until
    the k truncated values are distinct (p = 1 is evenly spaced)."""
    k = math.ceil(total_steps / interval)
    c = round(center * total_steps)
    while power > 1.0:
        lo, hi = -(c ** (1 / power)), (total_steps - c) ** (1 / power)
        xs = [lo + (hi - lo) * i / k for i in range(k + 1)]
        steps = sorted({int(math.copysign(abs(x) ** power, x)) + c for x in xs[:-1]})
        if len(steps) == k and steps[0] == 0:
            return steps
        power -= 0.02
    return sorted({int(i * total_steps / k) for i in range(k)})


def full_steps(total_steps: int, interval: int, schedule: str = "uniform", start_percent: float = 0.0,
               end_percent: float = 1.0) -> list[int]:
    """Steps (numbered 1..T as the guidance cut numbers them) that run the whole UNet and refresh the cache.
    uniform 1:N: steps 1, 1+N, 1+2N, ...; non-uniform: the paper's schedule. Steps outside
    [start_percent, end_percent) of the run (step s sits at (s-1)/T) are full as well."""
    validate(interval, schedule, start_percent, end_percent)
    if schedule == "uniform":
        chosen = set(range(0, total_steps, interval))
    else:
        chosen = set(nonuniform_full_steps(total_steps, interval))
    chosen |= {s for s in range(total_steps) if not (start_percent <= s / total_steps < end_percent)}
    return sorted(s + 1 for s in chosen)


def schedule_summary(total_steps: int, full: list[int]) -> str:
    return (f"{len(full)} full and {total_steps - len(full)} partial steps of {total_steps} "
            f"(full: {', '.join(map(str, full))})")


# ---- accounting ----

def cached_video_macs(full_guided: MacCount, full_unguided: MacCount, partial_guided: MacCount,
                      partial_unguided: MacCount, steps: int, cut_step: int, full: list[int]) -> MacCount:
    """MACs of a whole video with the cache: step s costs a full or a partial call, guided (CFG, 2 rows per frame)
    for s < cut_step and conditional only from the cut on (VCUT Eq. 4)."""
    total = MacCount(0, 0)
    for s in range(1, steps + 1):
        guided = s < cut_step
        if s in full:
            total = total + (full_guided if guided else full_unguided)
        else:
            total = total + (partial_guided if guided else partial_unguided)
    return total


@dataclasses.dataclass
class RunStats:
    """What one sampling run with the cache did: UNet calls and rows, split full / partial, and the reasons
    partial steps ran fully."""
    full_calls: int = 0
    partial_calls: int = 0
    full_rows: int = 0
    partial_rows: int = 0
    forced: dict = dataclasses.field(default_factory=dict)

    def record(self, rows: int, partial: bool) -> None:
        if partial:
            self.partial_calls += 1
            self.partial_rows += rows
        else:
            self.full_calls += 1
            self.full_rows += rows

    def force(self, reason: str) -> None:
        self.forced[reason] = self.forced.get(reason, 0) + 1

    def summary(self) -> str:
        text = (f"{self.full_calls + self.partial_calls} UNet calls ({self.full_rows + self.partial_rows} rows): "
                f"{self.full_calls} full ({self.full_rows} rows), {self.partial_calls} partial "
                f"({self.partial_rows} rows)")
        if self.forced:
            text += "; ran fully instead of partially: " + ", ".join(f"{k} ({v}x)" for k, v in self.forced.items())
        return text
