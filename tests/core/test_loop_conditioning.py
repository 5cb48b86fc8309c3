"""LoopAnimate layouts on SVD: SDSLC (Eq. 8), inverted-noise init (Eq. 5), FGSM (Eq. 10), loop frame count."""
import pytest
import torch

from vcut.loop import conditioning as cond


def _z(seed=0, c=4, h=6, w=8):
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("frames", [3, 5, 15, 35])
def test_sdslc_matches_eq8(frames):
    z = _z()
    out = cond.sdslc_layout(z, frames)
    assert out.shape == (frames, 4, 6, 8)
    assert torch.equal(out[0], z[0]) and torch.equal(out[-1], z[0])  # e(F0) at both ends
    assert torch.count_nonzero(out[1:-1]) == 0  # ZeroPAD in between


def test_repeat_and_inverted_noise_put_image_on_every_frame():
    z = _z(1)
    for out in (cond.repeat_layout(z, 7), cond.inverted_noise_init(z, 7), cond.concat_layout(z, 7, "repeat")):
        assert out.shape[0] == 7
        assert all(torch.equal(out[i], z[0]) for i in range(7))
    assert torch.equal(cond.concat_layout(z, 7, "sdslc"), cond.sdslc_layout(z, 7))
    with pytest.raises(ValueError):
        cond.concat_layout(z, 7, "zeros")


def test_layouts_do_not_alias_input():
    z = _z(2)
    out = cond.repeat_layout(z, 3)
    out[1] += 1
    assert torch.equal(out[0], z[0])


def test_fgsm_matches_eq10():
    m0 = (torch.rand(1, 1, 6, 8, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    out = cond.fgsm_layout(m0, 9)
    assert out.shape == (9, 1, 6, 8)
    assert torch.equal(out[0], m0[0]) and torch.equal(out[-1], m0[0])  # M0 at both ends
    assert torch.all(out[1:-1] == 1)  # OnePAD in between
    assert torch.equal(cond.motion_masks(m0, 9, "paper eq. 10"), out)


def test_still_background_motion_masks_and_keep_mask():
    m = torch.zeros(1, 1, 6, 8)
    m[..., 2:4, 3:6] = 1
    motion = cond.motion_masks(m, 5, "still background")
    assert all(torch.equal(motion[i], m[0]) for i in range(5))
    keep = cond.loop_keep_mask(5, 6, 8, motion, close_loop=True, anchor_first=True)
    assert torch.all(keep[0] == 1) and torch.all(keep[-1] == 1)
    assert torch.equal(keep[2], 1 - m[0])
    per_frame = torch.rand(5, 1, 6, 8)
    assert torch.equal(cond.motion_masks(per_frame, 5, "still background"), per_frame)
    with pytest.raises(ValueError):
        cond.motion_masks(torch.rand(3, 1, 6, 8), 5, "still background")
    keep = cond.loop_keep_mask(5, 6, 8, None, close_loop=True, anchor_first=False)
    assert torch.all(keep[-1] == 1) and torch.count_nonzero(keep[:-1]) == 0


@pytest.mark.parametrize("requested,expected", [(2, 3), (3, 3), (14, 15), (15, 15), (25, 25), (24, 25)])
def test_loop_frame_count_rounds_even_up(requested, expected):
    assert cond.loop_frame_count(requested) == expected


def test_loop_frame_count_rejects_single_frame():
    with pytest.raises(ValueError):
        cond.loop_frame_count(1)
    with pytest.raises(ValueError):
        cond.sdslc_layout(torch.zeros(2, 4, 3, 3), 5)  # two images: which one is F0?


def test_loop_plan_layout_init_and_closure():
    image = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(6))
    plan = cond.loop_plan(image, 5, "sdslc", "inverted noise")
    assert all(torch.equal(plan.anchors[i], image[0]) for i in range(5))
    assert all(torch.equal(plan.init[i], image[0]) for i in range(5))  # Eq. 5: e(F0) on every frame
    assert torch.equal(plan.concat[0], image[0]) and torch.equal(plan.concat[4], image[0])  # Eq. 8
    assert torch.count_nonzero(plan.concat[1:4]) == 0
    assert plan.anchored_frames() == [0, 4]  # first frame and loop closure
    empty = cond.loop_plan(image, 5, "repeat", "empty", anchor_first=False)
    assert torch.count_nonzero(empty.init[:4]) == 0 and torch.equal(empty.init[4], image[0])
    assert empty.anchored_frames() == [4] and all(torch.equal(empty.concat[i], image[0]) for i in range(5))
    motion = torch.zeros(5, 1, 3, 5)
    motion[:, :, 1:, 1:4] = 1
    still = cond.loop_plan(image, 5, "sdslc", "empty", motion, close_loop=False, anchor_first=False)
    assert torch.equal(still.keep, 1 - motion)  # outside the motion region every frame is anchored
    with pytest.raises(ValueError, match="init"):
        cond.loop_plan(image, 5, "sdslc", "noise")
