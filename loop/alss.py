"""LoopAnimate's Asymmetric Loop Sampling Strategy (ALSS, Eq. 3-4). No ComfyUI import.

Eq. 3: L_v = [F_0, F_s, ..., F_s(f-1), F_s_(f-2), ..., F_s_1, F_0]: f forward frames at stride s, then back to F_0
through reverse positions s_(f-2) > ... > s_1 > s_0 = 0 with s_(f-1) = s(f-1) (the turning frame is shared).
Eq. 4: the reverse steps s_i - s_(i-1) lie in {2, 4, 6, 8} and sum to s(f-1). So the clip has 2f - 1 frames, its
first and last frames are F_0, and its symmetric positions differ (the way back takes other frames).

The reverse steps are drawn uniformly (seeded) from all step sequences that satisfy Eq. 4.
"""
from __future__ import annotations

import functools
import random

REVERSE_STEPS = (2, 4, 6, 8)


@functools.lru_cache(maxsize=None)
def _count(steps_left: int, remaining: int) -> int:
    """Number of sequences of `steps_left` values from REVERSE_STEPS summing to `remaining`."""
    if steps_left == 0:
        return 1 if remaining == 0 else 0
    return sum(_count(steps_left - 1, remaining - d) for d in REVERSE_STEPS if d <= remaining)


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
    steps = []
    while left > 0:
        options = [d for d in REVERSE_STEPS if d <= remaining]
        weights = [_count(left - 1, remaining - d) for d in options]
        d = rng.choices(options, weights=weights)[0]
        steps.append(d)
        remaining -= d
        left -= 1
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
