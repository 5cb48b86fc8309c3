"""Video Compare's core (video/compare.py) on real clips from tests/data: identical videos, copies with a known
difference (noise, a one-pixel shift, a constant offset, an alternating offset) checked against numbers computed by
hand in numpy, and the inputs it must refuse by name."""
import math

import numpy as np
import pytest
import torch
from clips import read_frames
from conftest import TEST_DATA

from vcut.video import compare
from vcut.video.ssim import ssim_pair

FRAMES = 6


@pytest.fixture(scope="module")
def clip():
    """Six real frames (vid_h264.mp4, a 96x160 crop) as a ComfyUI IMAGE: float32 in 0..1."""
    frames = read_frames(TEST_DATA / "video" / "vid_h264.mp4", FRAMES, start=30)[:, 300:396, 500:660]
    return torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0


@pytest.fixture(scope="module")
def car():
    frames = read_frames(TEST_DATA / "video" / "car-detection.mp4", FRAMES, start=120)[:, 200:272, 300:400]
    return torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0


def _psnr_by_hand(reference, candidate):
    """Per-frame PSNR and the whole video's (10 log10 of 1 / the mean MSE over all frames), numpy float64."""
    r, c = reference.numpy().astype(np.float64), candidate.numpy().astype(np.float64)
    mse = ((c - r) ** 2).reshape(r.shape[0], -1).mean(axis=1)
    return [10 * math.log10(1 / m) for m in mse], 10 * math.log10(1 / mse.mean())


@pytest.mark.parametrize("name", ["clip", "car"])
def test_identical_videos_give_infinite_psnr_ssim_1_and_zero_temporal_difference(name, request):
    video = request.getfixturevalue(name)
    k = compare.compare_videos(video, video.clone())
    assert k.identical and k.video_psnr == math.inf and all(p == math.inf for p in k.psnr)
    assert k.mean_ssim == 1.0 and all(s == 1.0 for s in k.ssim)
    assert k.temporal_difference == 0.0 and k.temporal == [0.0] * (FRAMES - 1)
    line = compare.summary(k, "exact", "VCUT")
    assert line == "VCUT vs exact: identical (6 frames): PSNR inf, SSIM 1, temporal difference 0%"
    assert compare.per_frame_table(k).splitlines()[-1] == "5,inf,1.000000,0.0000"


def test_noised_copy_gives_the_psnr_computed_by_hand(clip):
    noise = 0.02 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(1))
    noised = clip + noise  # not clamped: the error is exactly the noise
    k = compare.compare_videos(clip, noised)
    per_frame, video = _psnr_by_hand(clip, noised)
    assert k.psnr == pytest.approx(per_frame, abs=1e-9) and k.video_psnr == pytest.approx(video, abs=1e-9)
    assert 33 < k.video_psnr < 35  # sigma 0.02: 10 log10(1 / 0.0004) = 34.0 dB
    assert k.ssim == pytest.approx([ssim_pair(clip[t], noised[t]) for t in range(FRAMES)], abs=1e-12)
    assert all(0 < s < 1 for s in k.ssim)
    worst = int(np.argmin(per_frame))
    line = compare.summary(k)
    assert line.startswith(f"candidate vs reference: mean PSNR {video:.1f} dB, min {per_frame[worst]:.1f} at frame "
                           f"{worst}, SSIM {k.mean_ssim:.3f}, temporal difference ")
    # independent noise in every frame changes from frame to frame: the temporal difference sees it as flicker
    r, c = clip.numpy().astype(np.float64), noised.numpy().astype(np.float64)
    by_hand = 100 * np.abs(np.diff(c, axis=0) - np.diff(r, axis=0)).mean() / np.abs(np.diff(r, axis=0)).mean()
    assert k.temporal_difference == pytest.approx(by_hand, rel=1e-9) and k.temporal_difference > 10


def test_shifted_copy_gives_the_psnr_computed_by_hand(car):
    shifted = torch.roll(car, shifts=1, dims=2)  # one pixel to the right (the last column wraps around)
    k = compare.compare_videos(car, shifted)
    per_frame, video = _psnr_by_hand(car, shifted)
    assert k.psnr == pytest.approx(per_frame, abs=1e-9) and k.video_psnr == pytest.approx(video, abs=1e-9)
    assert k.worst_frame == int(np.argmin(per_frame))


def test_constant_offset_is_no_flicker_and_alternating_offset_is(clip):
    """A constant error changes nothing from frame to frame: 0%. An offset of +d, -d, +d, ... changes by 2d at every
    step: D_t = 2d, so TD = 100 * 2d / (the reference's mean |r[t+1] - r[t]|), while PSNR is the same for both."""
    d = 0.01
    k = compare.compare_videos(clip, clip + d)
    assert k.psnr == pytest.approx([20 * math.log10(1 / d)] * FRAMES, abs=1e-4)  # float32 frames: 0.01 rounded
    assert k.temporal_difference == pytest.approx(0.0, abs=1e-3)
    signs = torch.tensor([1.0 if t % 2 == 0 else -1.0 for t in range(FRAMES)]).view(-1, 1, 1, 1)
    alternating = clip.double() + d * signs
    k = compare.compare_videos(clip.double(), alternating)
    r = clip.numpy().astype(np.float64)
    motion = np.abs(np.diff(r, axis=0)).mean()
    assert k.reference_motion == pytest.approx(motion, rel=1e-9)
    assert k.temporal_difference == pytest.approx(100 * 2 * d / motion, rel=1e-6)
    assert k.temporal == pytest.approx([100 * 2 * d / motion] * (FRAMES - 1), rel=1e-6)
    assert k.psnr == pytest.approx([20 * math.log10(1 / d)] * FRAMES, abs=1e-6)


def test_no_8_bit_rounding(clip):
    """A difference far below one 8-bit step (1/255) is measured, not rounded away."""
    k = compare.compare_videos(clip, clip + 1e-4)
    assert not k.identical and k.video_psnr == pytest.approx(80.0, abs=1e-3)


def test_an_identical_frame_keeps_the_mean_psnr_finite(clip):
    noised = clip + 0.01
    noised[0] = clip[0]  # e.g. an anchored first frame
    k = compare.compare_videos(clip, noised)
    assert k.psnr[0] == math.inf and math.isfinite(k.video_psnr) and k.ssim[0] == 1.0
    assert "1 of 6 frames identical" in compare.summary(k)


def test_one_frame_videos_have_psnr_and_ssim_but_no_temporal_difference(clip):
    k = compare.compare_videos(clip[:1], clip[:1] + 0.01)
    assert k.psnr == pytest.approx([40.0], abs=1e-4) and 0 < k.mean_ssim < 1
    assert k.temporal == [] and k.temporal_difference is None
    assert "temporal difference n/a (one frame)" in compare.summary(k)
    same = compare.compare_videos(clip[:1], clip[:1])
    assert compare.summary(same) == ("candidate vs reference: identical (1 frame): PSNR inf, SSIM 1, temporal "
                                     "difference n/a (one frame)")
    assert compare.render_plot(k).shape[1] == 768


def test_still_reference(clip):
    still = clip[:1].repeat(FRAMES, 1, 1, 1)
    assert compare.compare_videos(still, still + 0.01).temporal_difference == 0.0
    k = compare.compare_videos(still, clip)
    assert k.temporal_difference == math.inf
    assert "temporal difference inf (the reference is still, the candidate changes)" in compare.summary(k)


def test_alpha_is_ignored_and_said(clip):
    alpha = torch.rand(clip.shape[:3] + (1,), generator=torch.Generator().manual_seed(0))
    k = compare.compare_videos(clip, torch.cat([clip, alpha], dim=-1))
    assert k.identical
    assert compare.summary(k).endswith("; candidate's alpha channel ignored (RGB compared)")


def test_different_frame_counts_or_sizes_name_both_shapes(clip):
    with pytest.raises(ValueError, match=r"reference and candidate differ: reference is 6 frames of 160x96 "
                                         r"\(shape \[6, 96, 160, 3\]\), candidate is 5 frames of 160x96 .*; compare "
                                         r"videos of one frame count and one size"):
        compare.compare_videos(clip, clip[:5])
    with pytest.raises(ValueError, match=r"candidate is 6 frames of 80x96 \(shape \[6, 96, 80, 3\]\)"):
        compare.compare_videos(clip, clip[:, :, :80])


def test_nan_frames_are_refused_by_name(clip):
    bad = clip.clone()
    bad[3, 5, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="candidate: frame 3 contains NaN or infinite values"):
        compare.compare_videos(clip, bad)
    bad[3, 5, 5, 1] = float("inf")
    with pytest.raises(ValueError, match="reference: frame 3 contains NaN"):
        compare.compare_videos(bad, clip)


@pytest.mark.parametrize("bad,message", [
    (torch.zeros(4, 8, 8), r"reference: expected an IMAGE batch \[frames, height, width, channels\] with 1 "
                           r"\(grey\), 3 \(RGB\) or 4 \(RGBA\) channels, got \(4, 8, 8\)"),
    (torch.zeros(0, 8, 8, 3), r"reference: an empty batch \(0 frames\); give at least 1 frame"),
    (torch.zeros(2, 0, 8, 3), r"reference: empty frames of 8x0 pixels"),
    (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), r"reference: expected float pixel values in 0..1"),
    ("frames", r"reference: expected an IMAGE batch .* got str"),
])
def test_other_bad_inputs_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        compare.compare_videos(bad, torch.zeros(2, 8, 8, 3))


def test_preview_shows_reference_candidate_and_difference(clip):
    noised = clip + 0.02 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(2))
    k = compare.compare_videos(clip, noised)
    pic = compare.preview(clip, noised, k, "exact", "VCUT")
    h, w = 96, 160  # under the 512 px panel: kept at its size
    assert pic.shape == (FRAMES, compare.HEADER + h, 3 * w, 3) and pic.dtype == torch.float32
    assert float(pic.min()) >= 0 and float(pic.max()) <= 1
    body = pic[:, compare.HEADER:]
    assert torch.allclose(body[:, :, :w], clip, atol=0.5 / 255 + 1e-6)  # the reference panel, 8-bit for display
    assert not torch.allclose(body[:, :, w:2 * w], body[:, :, :w])
    same = compare.preview(clip, clip, compare.compare_videos(clip, clip))
    assert torch.equal(same[:, compare.HEADER:, :w], same[:, compare.HEADER:, w:2 * w])
    assert float(same[:, compare.HEADER:, 2 * w:].max()) < 0.05  # no difference: the darkest inferno colour


def test_preview_panels_are_bounded_and_tiny_frames_enlarged():
    big = torch.rand(2, 576, 1024, 3, generator=torch.Generator().manual_seed(0))
    k = compare.compare_videos(big, big)
    assert compare.preview(big, big, k).shape == (2, compare.HEADER + 288, 3 * 512, 3)
    tiny = big[:, :3, :5]
    assert compare.preview(tiny, tiny, compare.compare_videos(tiny, tiny)).shape == (2, compare.HEADER + 77, 3 * 128,
                                                                                     3)


def test_plot_and_per_frame_table(clip):
    noised = clip + 0.01
    noised[2] = clip[2]
    k = compare.compare_videos(clip, noised)
    plot = compare.render_plot(k, "exact", "VCUT")
    assert plot.dtype == np.float32 and plot.shape[1] == 768 and np.isfinite(plot).all()
    assert plot.min() < 0.5 < plot.max()  # something is drawn
    rows = compare.per_frame_table(k).splitlines()
    assert rows[0] == "frame,psnr_db,ssim,temporal_difference_pct" and len(rows) == FRAMES + 1
    assert rows[3].startswith("2,inf,1.000000,")
    assert rows[1].endswith(",") and float(rows[2].split(",")[3]) == pytest.approx(k.temporal[0], abs=1e-4)


def test_progress_reports_every_frame(clip):
    seen = []
    compare.compare_videos(clip, clip, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(t, FRAMES) for t in range(1, FRAMES + 1)]
