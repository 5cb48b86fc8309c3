"""LoopAnimate's Asymmetric Loop Sampling Strategy (ALSS, Eq. 3-4). No ComfyUI import.

Eq. 3: L_v = [F_0, F_s, ..., F_s(f-1), F_s_(f-2), ..., F_s_1, F_0]: f forward frames at stride s, then back to F_0
through reverse positions s_(f-2) > ... > s_1 > s_0 = 0 with s_(f-1) = s(f-1) (the turning frame is shared).
Eq. 4: the reverse steps s_i - s_(i-1) lie in {2, 4, 6, 8} and sum to s(f-1). So the clip has 2f - 1 frames, its
first and last frames are F_0, and its symmetric positions differ (the way back takes other frames).

The reverse steps are drawn uniformly (seeded) from all step sequences that satisfy Eq. 4, one step at a time, each
step weighted by how many Eq. 4 sequences can still follow it. Those counts are polynomial coefficients (below),
computed iteratively in exact integers: no recursion and no cache, so forward_frames up to the node's 1024 takes
well under a second and keeps nothing after the call.
"""
from __future__ import annotations

import itertools
import operator
import random

REVERSE_STEPS = (2, 4, 6, 8)
# A float holds counts below 2**1023; the draw of earlier releases (random.choices) is kept below this bound so a
# seed gives the clip it gave before; an exact integer draw takes over above it (from f = 505 at s = 5, 743 at s = 3).
_FLOAT_DRAW_LIMIT = 2 ** 1000


def _halved(total: int, steps: int) -> int | None:
    """Eq. 4 in halved units: steps from {1,2,3,4} summing to total/2 = steps + j; returns j, or None if no sequence
    exists (total odd, or total/2 outside steps..4*steps)."""
    if total % 2 or steps < 0:
        return None
    j = total // 2 - steps
    return j if 0 <= j <= 3 * steps else None


def _sequence_counts(steps: int, top: int) -> list[int]:
    """row[j] = number of Eq. 4 sequences of `steps` reverse steps summing to 2 * (steps + j), j = 0..top.

    Halved, a step is 1 + (0..3), so row is the coefficient list of (1 + x + x^2 + x^3)^steps, built by multiplying
    by that polynomial `steps` times (each product is a 4-wide running sum)."""
    row = [1] + [0] * top
    for _ in range(steps):
        prefix = [0, 0, 0, 0, *itertools.accumulate(row)]
        row = list(map(operator.sub, prefix[4:], prefix[:-4]))
    return row


def _one_step_fewer(row: list[int], top: int) -> list[int]:
    """The counts for one step fewer from `row` (division by 1 + x + x^2 + x^3, exact in integers):
    (1 + x + x^2 + x^3) = (1 - x^4) / (1 - x), so fewer[j] = row[j] - row[j-1] + fewer[j-4]."""
    difference = list(map(operator.sub, row[:top + 1], [0, *row[:top]]))
    fewer = [0] * (top + 1)
    for residue in range(4):  # fewer[j] = difference[j] + difference[j-4] + ...: a running sum per residue mod 4
        fewer[residue::4] = itertools.accumulate(difference[residue::4])
    return fewer


def _count_at(row: list[int], steps: int, j: int | None) -> int:
    """row[j] for `steps` steps, read from the low half: the polynomial is palindromic, row[j] = row[3 * steps - j]
    (a step d mirrored to 10 - d)."""
    return 0 if j is None else row[min(j, 3 * steps - j)]


def _needed(total: int, steps: int) -> int:
    """How far the next draw reads the counts for steps - 1 (see _count_at): min(j, 3 * steps - j). Both terms
    shrink as steps are drawn, so each row can be cut to it."""
    j = _halved(total, steps)
    return min(j, 3 * steps - j)


def count_reverse_sequences(steps: int, total: int) -> int:
    """Number of sequences of `steps` reverse steps from {2,4,6,8} summing to `total` (the solutions of Eq. 4)."""
    j = _halved(total, steps)
    return 0 if j is None else _count_at(_sequence_counts(steps, min(j, 3 * steps - j)), steps, j)


def _draw(rng: random.Random, options: list[int], weights: list[int]) -> int:
    """One option with probability weight / sum(weights), exactly."""
    total = sum(weights)
    if total < _FLOAT_DRAW_LIMIT:
        return rng.choices(options, weights=weights)[0]
    pick = rng.randrange(total)
    for option, weight in zip(options, weights, strict=True):
        if pick < weight:
            return option
        pick -= weight
    raise AssertionError("unreachable: pick < total")


def check_alss(forward_frames: int, stride: int) -> None:
    """Raise ValueError unless Eq. 4 has a solution for these f and s."""
    if forward_frames < 2:
        raise ValueError(f"forward_frames (f) must be >= 2 (the clip has 2f-1 frames), got {forward_frames}")
    if not 2 <= stride <= 8:
        raise ValueError(f"stride (s) must be in 2..8: the f-1 reverse steps are each in {{2,4,6,8}} and must sum "
                         f"to s(f-1), got s={stride}")
    if (stride * (forward_frames - 1)) % 2:
        raise ValueError(f"stride * (forward_frames - 1) must be even (reverse steps are even), got "
                         f"s={stride}, f={forward_frames}; use an even stride or an odd forward_frames")


def reverse_steps(forward_frames: int, stride: int, seed: int) -> list[int]:
    """f-1 reverse steps from {2,4,6,8} summing to s(f-1) (Eq. 4), uniform over all such sequences, seeded."""
    check_alss(forward_frames, stride)
    rng = random.Random(seed)
    remaining, left = stride * (forward_frames - 1), forward_frames - 1
    counts = _sequence_counts(left - 1, _needed(remaining, left))  # sequences for the steps after this one
    steps = []
    while left > 0:
        options = [d for d in REVERSE_STEPS if d <= remaining]
        weights = [_count_at(counts, left - 1, _halved(remaining - d, left - 1)) for d in options]
        d = _draw(rng, options, weights)
        steps.append(d)
        remaining -= d
        left -= 1
        if left > 0:
            counts = _one_step_fewer(counts, _needed(remaining, left))
    return steps


def frames_needed(forward_frames: int, stride: int) -> int:
    """Source frames one ALSS clip spans: F_0 .. F_s(f-1)."""
    return stride * (forward_frames - 1) + 1


def max_forward_frames(available: int, stride: int) -> int:
    """Largest f with s(f-1) + 1 <= available and s(f-1) even (0 if not even f = 2 fits)."""
    f = (available - 1) // stride + 1 if available >= 1 else 0
    while f >= 2 and (stride * (f - 1)) % 2:
        f -= 1
    return f if f >= 2 else 0


def alss_indices(forward_frames: int, stride: int, seed: int, start: int = 0) -> list[int]:
    """Source frame indices of one ALSS clip (Eq. 3), offset by `start` (F_0 = frame `start`). 2f-1 of them."""
    steps = reverse_steps(forward_frames, stride, seed)
    forward = [stride * i for i in range(forward_frames)]
    back, position = [], forward[-1]
    for d in steps:
        position -= d
        back.append(position)
    return [start + i for i in forward + back]
