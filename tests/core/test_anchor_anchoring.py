"""Frame anchoring math: frame lists, masks, noise-level anchors, exact replacement, the step schedule."""
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from vcut.anchor import anchoring as A

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"  # tests/data


@pytest.mark.parametrize("text,n,expected", [("0", 14, [0]), ("0,-1", 14, [0, 13]), ("0, 12 ,24", 25, [0, 12, 24]),
                                             ("-1", 1, [0]), ("5,0", 6, [5, 0])])
def test_parse_frame_list(text, n, expected):
    assert A.parse_frame_list(text, n) == expected


@pytest.mark.parametrize("text,n", [("14", 14), ("-15", 14), ("0,0", 14), ("0,-14", 14), ("", 14), ("a", 14),
                                    ("1.5", 14), ("0", 0)])
def test_parse_frame_list_rejects(text, n):
    with pytest.raises(ValueError, match="frames"):
        A.parse_frame_list(text, n)


def test_center_resize_matches_common_upscale_crop():
    t = torch.arange(2 * 1 * 6 * 12, dtype=torch.float32).reshape(2, 1, 6, 12)
    out = A.center_resize(t, 6, 6, mode="nearest")
    assert torch.equal(out, t[..., 3:9])  # wide -> square: centre columns
    assert A.center_resize(t, 6, 12) is t


def test_mask_to_latent_block_aligned_stays_binary_and_validates():
    mask = torch.zeros(48, 64)
    mask[8:24, 16:40] = 1.0
    lat = A.mask_to_latent(mask, 6, 8)
    assert lat.shape == (1, 1, 6, 8)
    assert set(lat.unique().tolist()) == {0.0, 1.0}
    assert lat.sum() == (16 // 8) * (24 // 8)
    bad_masks = (torch.full((4, 4), float("nan")), torch.full((4, 4), 2.0), torch.zeros(1, 2, 4, 4),
                 torch.zeros(0, 4, 4))
    for bad in bad_masks:
        with pytest.raises(ValueError, match="mask"):
            A.mask_to_latent(bad, 6, 8)


def test_real_photo_mask_downscale():
    img = np.asarray(Image.open(DATA / "photos" / "coffee.png").convert("L"), dtype=np.float32) / 255.0
    mask = torch.from_numpy((img > 0.5).astype(np.float32))
    lat = A.mask_to_latent(mask, 16, 16)
    assert lat.shape == (1, 1, 16, 16)
    assert 0 <= float(lat.min()) and float(lat.max()) <= 1
    # centre-cropped area average keeps the mean of the cropped region
    h, w = mask.shape
    side = min(h, w)
    crop = mask[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    assert abs(float(lat.mean()) - float(crop.mean())) < 0.02


def test_keep_mask_and_place_anchors():
    anchors = torch.randn(2, 4, 3, 5)
    placed = A.place_anchors(6, [0, 5], anchors)
    assert torch.equal(placed[0], anchors[0]) and torch.equal(placed[5], anchors[1])
    assert torch.count_nonzero(placed[1:5]) == 0
    one = A.place_anchors(6, [1, 3], anchors[:1])
    assert torch.equal(one[1], anchors[0]) and torch.equal(one[3], anchors[0])
    with pytest.raises(ValueError, match="anchor"):
        A.place_anchors(6, [0, 2, 4], anchors)
    keep = A.frame_keep_mask(6, [0, 5], 3, 5)
    assert keep.shape == (6, 1, 3, 5) and keep[0].min() == 1 and keep[5].min() == 1 and keep[1:5].max() == 0
    spatial = torch.zeros(1, 1, 3, 5)
    spatial[..., 1, 2] = 1
    keep = A.frame_keep_mask(6, [2], 3, 5, spatial)
    assert keep.sum() == 1 and keep[2, 0, 1, 2] == 1
    with pytest.raises(ValueError, match="mask"):
        A.frame_keep_mask(6, [0, 1, 2], 3, 5, torch.zeros(2, 1, 3, 5))


def test_noise_level_anchor_is_edm_forward():
    a, n = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    assert torch.equal(A.noise_level_anchor(a, 2.5, n), a + 2.5 * n)
    sig = torch.tensor([1.0, 2.0, 3.0])
    out = A.noise_level_anchor(a, sig, n)
    for i in range(3):
        assert torch.equal(out[i], a[i] + sig[i] * n[i])


def test_blend_is_exact_where_kept_and_leaves_inputs_untouched():
    x = torch.randn(4, 4, 3, 3) * 1e3
    a = torch.randn(4, 4, 3, 3) / 7
    keep = torch.zeros(4, 1, 3, 3)
    keep[0] = 1
    keep[2, 0, 1, 1] = 0.25
    x0, a0 = x.clone(), a.clone()
    out = A.blend(x, a, keep)
    assert torch.equal(out[0], a[0])  # bit-exact anchor
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
    assert torch.allclose(out[2, :, 1, 1], 0.75 * x[2, :, 1, 1] + 0.25 * a[2, :, 1, 1])
    assert torch.equal(x, x0) and torch.equal(a, a0)
    x[0] = float("inf")
    assert torch.equal(A.blend(x, a, keep)[0], a[0])


def test_anchor_schedule():
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    full = A.AnchorSchedule(sigmas, 1.0)
    assert full.whole_schedule and all(full.active(s) for s in (10.0, 1.0, 0.5))
    half = A.AnchorSchedule(sigmas, 0.5)  # steps 0 and 1 anchored (sigma 10 and 5; Heun's 2nd call of step 1 at 2)
    assert not half.whole_schedule
    assert half.active(10.0) and half.active(5.0) and half.active(3.0)
    assert not half.active(2.0) and not half.active(1.0)
    none = A.AnchorSchedule(sigmas, 0.0)
    assert not none.active(10.0) and not none.whole_schedule
    assert A.anchored_step_count(0.01, 25) == 1 and A.anchored_step_count(0.64, 25) == 16
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="anchor_steps"):
            A.anchored_step_count(bad, 10)
