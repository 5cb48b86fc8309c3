"""ALSS (LoopAnimate Eq. 3-4): index structure for many seeds, feasibility and too-short inputs."""
import functools
import random

import pytest

from vcut.loop import alss


@pytest.mark.parametrize("f,s", [(8, 6), (11, 6), (18, 6), (2, 2), (2, 8), (5, 3), (7, 4), (4, 2)])
def test_indices_satisfy_eq3_eq4_for_many_seeds(f, s):
    for seed in range(200):
        idx = alss.alss_indices(f, s, seed)
        assert len(idx) == 2 * f - 1
        assert idx[0] == 0 and idx[-1] == 0
        assert idx[:f] == [s * i for i in range(f)]  # forward part at stride s
        back = idx[f - 1:]  # from the turning frame F_s(f-1) down to F_0
        steps = [a - b for a, b in zip(back[:-1], back[1:], strict=False)]
        assert len(steps) == f - 1
        assert all(d in (2, 4, 6, 8) for d in steps)
        assert sum(steps) == s * (f - 1)


def test_seeded_and_varied():
    assert alss.alss_indices(8, 6, 3) == alss.alss_indices(8, 6, 3)
    seqs = {tuple(alss.alss_indices(8, 6, seed)) for seed in range(50)}
    assert len(seqs) > 10  # the reverse path is random


def test_reverse_steps_uniform_over_compositions():
    # f-1 = 2 steps summing to 8: (2,6), (4,4), (6,2) -> each about 1/3
    counts = {}
    for seed in range(3000):
        key = tuple(alss.reverse_steps(3, 4, seed))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(2, 6), (4, 4), (6, 2)}
    assert all(800 < c < 1200 for c in counts.values())


def test_start_offset():
    idx = alss.alss_indices(4, 2, 0, start=10)
    assert idx[0] == idx[-1] == 10 and idx[3] == 16


@pytest.mark.parametrize("f,s", [(1, 6), (8, 1), (8, 9), (4, 3)])
def test_infeasible_requests_raise(f, s):
    with pytest.raises(ValueError):
        alss.alss_indices(f, s, 0)


def test_frames_needed_and_max_forward_frames():
    assert alss.frames_needed(8, 6) == 43
    assert alss.max_forward_frames(43, 6) == 8
    assert alss.max_forward_frames(42, 6) == 7
    assert alss.max_forward_frames(14, 3) == 5  # 5 -> s(f-1)=12 even, fits 13 frames
    assert alss.max_forward_frames(12, 3) == 3  # f=4 would give odd 9
    assert alss.max_forward_frames(2, 2) == 0


@functools.lru_cache(maxsize=None)
def _recursive_count(steps_left, remaining):
    """The earlier releases' recursive definition of the Eq. 4 count (reference for small values)."""
    if steps_left == 0:
        return 1 if remaining == 0 else 0
    return sum(_recursive_count(steps_left - 1, remaining - d) for d in (2, 4, 6, 8) if d <= remaining)


def _recursive_reverse_steps(forward_frames, stride, seed):
    """The earlier releases' draw, on the recursive count: a seed must give the clip it gave before."""
    rng = random.Random(seed)
    remaining, left, steps = stride * (forward_frames - 1), forward_frames - 1, []
    while left > 0:
        options = [d for d in (2, 4, 6, 8) if d <= remaining]
        d = rng.choices(options, weights=[_recursive_count(left - 1, remaining - d) for d in options])[0]
        steps.append(d)
        remaining, left = remaining - d, left - 1
    return steps


def test_count_matches_the_recursive_definition_for_small_values():
    for steps in range(0, 16):
        for total in range(0, 140):
            assert alss.count_reverse_sequences(steps, total) == _recursive_count(steps, total), (steps, total)


def test_same_seed_gives_the_same_steps_as_the_recursive_draw():
    for f in range(2, 30):
        for s in range(2, 9):
            if s * (f - 1) % 2:
                continue
            for seed in range(4):
                assert alss.reverse_steps(f, s, seed) == _recursive_reverse_steps(f, s, seed), (f, s, seed)


@pytest.mark.parametrize("s", [2, 3, 4, 5, 6, 7, 8])
def test_forward_frames_up_to_the_widget_max_satisfy_eq4(s):
    f = 1024 if s % 2 == 0 else 1023  # s(f-1) even
    steps = alss.reverse_steps(f, s, seed=11)
    assert len(steps) == f - 1 and sum(steps) == s * (f - 1)
    assert set(steps) <= {2, 4, 6, 8}
    idx = alss.alss_indices(f, s, seed=11)
    assert len(idx) == 2 * f - 1 and idx[0] == idx[-1] == 0


def test_large_counts_are_exact():
    # s = 8: every reverse step must be 8 (one sequence); s = 2: every step must be 2
    assert alss.count_reverse_sequences(1023, 8 * 1023) == 1
    assert alss.count_reverse_sequences(1023, 2 * 1023) == 1
    # two steps more than the minimum: C(k, 1) ways to place a 6, plus C(k, 2) ways to place two 4s
    assert alss.count_reverse_sequences(1023, 2 * 1023 + 4) == 1023 + 1023 * 1022 // 2
    # the count is palindromic: d <-> 10 - d maps the sequences summing to t onto those summing to 10k - t
    assert alss.count_reverse_sequences(600, 2500) == alss.count_reverse_sequences(600, 3500)
    assert alss.count_reverse_sequences(600, 3000) > 2 ** 1000  # beyond a float: the exact draw's range


def test_exact_draw_for_counts_beyond_a_float():
    rng = random.Random(0)
    big = 2 ** 1100
    counts = {2: 0, 4: 0, 6: 0, 8: 0}
    for _ in range(4000):
        counts[alss._draw(rng, [2, 4, 6, 8], [big, big, 0, 2 * big])] += 1
    assert counts[6] == 0
    assert 850 < counts[2] < 1150 and 850 < counts[4] < 1150 and 1850 < counts[8] < 2150
