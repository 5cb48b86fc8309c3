"""ALSS (LoopAnimate Eq. 3-4): index structure for many seeds, feasibility and too-short inputs."""
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
