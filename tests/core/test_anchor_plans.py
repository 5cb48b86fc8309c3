"""Anchoring plans (anchor/plans.py) against hand-built expectations: continuation (Video Extend), keyframes and
interpolation (STIV Frame Replace). No ComfyUI."""
import pytest
import torch

from vcut.anchor import plans
from vcut.anchor.anchoring import parse_frame_list


def _latent(frames, seed=0, h=3, w=5):
    return torch.randn(frames, 4, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("overlap", [1, 2, 3])
def test_continuation_plan_anchors_the_first_k_frames_to_the_previous_last_k(overlap):
    previous = _latent(25)
    plan = plans.continuation_plan(previous, overlap, 25)
    anchors = torch.zeros(25, 4, 3, 5)
    anchors[:overlap] = previous[25 - overlap:]
    keep = torch.zeros(25, 1, 3, 5)
    keep[:overlap] = 1
    assert torch.equal(plan.anchors, anchors) and torch.equal(plan.keep, keep)
    assert torch.equal(plan.init, anchors)  # the overlap written in, zeros (SVD's empty latent) elsewhere
    assert plan.anchored_frames() == list(range(overlap))
    assert torch.equal(plan.concat, previous[-1:].expand(25, -1, -1, -1))  # SVD's layout from the last frame
    assert plans.continuation_plan(previous, overlap, 14, fresh_concat=False).concat is None
    assert plans.continuation_plan(previous, overlap, 14).frames == 14  # another segment length


def test_chained_continuation_plans_overlap_exactly():
    seg1 = _latent(14, seed=1)
    plan2 = plans.continuation_plan(seg1, 2, 14)
    seg2 = plan2.init.clone()
    seg2[2:] = _latent(12, seed=2)  # what a sampler would add
    plan3 = plans.continuation_plan(seg2, 2, 14)
    assert torch.equal(plan3.anchors[:2], seg2[-2:]) and torch.equal(plan3.anchors[:2], seg2[12:])
    assert torch.equal(plan2.anchors[:2], seg1[-2:])


@pytest.mark.parametrize("overlap,prev,frames,message", [
    (0, 14, 14, "at least 1"), (15, 14, 25, "only 14"), (14, 14, 14, "no new frame"), (25, 25, 25, "no new frame")])
def test_continuation_rejects_bad_overlap(overlap, prev, frames, message):
    with pytest.raises(ValueError, match=f"overlap: .*{message}"):
        plans.continuation_plan(_latent(prev), overlap, frames)


def test_plans_reject_nan_latents():
    bad = _latent(5)
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="previous: .*NaN"):
        plans.continuation_plan(bad, 1, 5)
    with pytest.raises(ValueError, match="latent: .*NaN"):
        plans.frame_replace_plan(bad, [0], _latent(1))
    with pytest.raises(ValueError, match="anchor: .*NaN"):
        plans.frame_replace_plan(_latent(5), [0], bad[2:3])


def test_interpolation_plan_first_and_last_frame_two_images():
    video = torch.zeros(14, 4, 3, 5)
    images = _latent(2, seed=3)
    plan = plans.frame_replace_plan(video, parse_frame_list("0,-1", 14), images)
    expected = torch.zeros(14, 4, 3, 5)
    expected[0], expected[13] = images[0], images[1]
    assert torch.equal(plan.anchors, expected) and torch.equal(plan.init, expected)
    assert plan.anchored_frames() == [0, 13] and plan.concat is None
    assert torch.all(plan.keep[[0, 13]] == 1) and torch.count_nonzero(plan.keep[1:13]) == 0


def test_keyframe_plan_0_12_24_with_a_region():
    video = _latent(25, seed=4)
    keys = _latent(3, seed=5)
    region = torch.zeros(1, 1, 3, 5)
    region[..., 1:, 2:] = 1
    plan = plans.frame_replace_plan(video, parse_frame_list("0,12,24", 25), keys, region)
    for j, f in enumerate((0, 12, 24)):
        assert torch.equal(plan.anchors[f], keys[j])
        assert torch.equal(plan.keep[f], region[0])
        inside = region[0, 0] > 0
        assert torch.equal(plan.init[f][:, inside], keys[j][:, inside])
        assert torch.equal(plan.init[f][:, ~inside], video[f][:, ~inside])  # outside the region: the video
    others = [i for i in range(25) if i not in (0, 12, 24)]
    assert torch.equal(plan.init[others], video[others]) and torch.count_nonzero(plan.keep[others]) == 0
    with pytest.raises(ValueError, match="frames"):
        parse_frame_list("0,12,25", 25)
    with pytest.raises(ValueError, match="twice"):
        parse_frame_list("0,12,-13", 25)
