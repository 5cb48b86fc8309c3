"""Video Loop Metrics core (loop/metrics.py): its SSIM (video/ssim.py) against a reference formula, metrics on
constructed videos."""
import math

import cv2
import numpy as np
import pytest
import torch
from clips import read_frames
from conftest import TEST_DATA

from vcut.anchor.anchoring import center_resize
from vcut.loop.metrics import (
    EMBED_BATCH,
    cosine,
    format_metrics,
    loop_metrics,
    pixel_embedding,
    render_plot,
    seam_step,
)
from vcut.video.ssim import gaussian_window, ssim, ssim_pair


def _reference_ssim(a, b, size=11, sigma=1.5, L=1.0):
    """Wang et al. 2004 written out window by window in numpy (valid windows, per channel, averaged)."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for ch in range(a.shape[-1]):
        for i in range(a.shape[0] - size + 1):
            for j in range(a.shape[1] - size + 1):
                pa, pb = a[i:i + size, j:j + size, ch], b[i:i + size, j:j + size, ch]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def _float64_ssim_all_pairs(x, y, size=11, sigma=1.5):
    """The straightforward computation: every pair at once, float64, a 2-D Gaussian window (the node's code before
    it worked pair by pair in float32)."""
    size = min(size, x.shape[1], x.shape[2])
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-k ** 2 / (2 * sigma ** 2))
    win = torch.outer(g, g) / torch.outer(g, g).sum()
    c = x.shape[-1]
    kernel = win.expand(c, 1, size, size).contiguous()
    a, b = x.permute(0, 3, 1, 2).double(), y.permute(0, 3, 1, 2).double()
    conv = lambda t: torch.nn.functional.conv2d(t, kernel, groups=c)  # noqa: E731  (a one-line helper)
    mu_a, mu_b = conv(a), conv(b)
    s_aa, s_bb, s_ab = conv(a * a) - mu_a ** 2, conv(b * b) - mu_b ** 2, conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return smap.mean(dim=(1, 2, 3))


def _real_clip(name, count, start, size):
    frames = torch.from_numpy(read_frames(TEST_DATA / "video" / name, count, start)).float() / 255.0
    return torch.nn.functional.interpolate(frames.movedim(-1, 1), size=size, mode="area").movedim(1, -1)


@pytest.mark.parametrize("name, start, size", [("vid_h264.mp4", 150, (144, 256)), ("car-detection.mp4", 40, (108, 192))])
def test_pair_by_pair_float32_ssim_equals_the_float64_all_pairs_computation_on_real_clips(name, start, size):
    frames = _real_clip(name, 6, start, size)
    ours = ssim(frames[:-1], frames[1:])
    reference = _float64_ssim_all_pairs(frames[:-1], frames[1:])
    assert ours.dtype == torch.float32 and ours.shape == (5,)
    assert torch.allclose(ours.double(), reference, atol=1e-6, rtol=0), (ours, reference)
    assert float((reference - 1).abs().min()) > 1e-3  # real motion: SSIM clearly below 1
    # a dark, low-contrast pair (small variances next to E[a^2]): float32 still agrees
    dark = frames[:2] * 0.05 + 0.9
    assert float(ssim(dark[:1], dark[1:])[0]) == pytest.approx(float(_float64_ssim_all_pairs(dark[:1], dark[1:])[0]),
                                                                abs=2e-6)
    # the node's metrics on the same clip: motion from the same SSIMs
    m = loop_metrics(frames, frames[:1])
    assert m["motion"] == pytest.approx(1.0 - float(reference.mean()), abs=2e-6)
    assert m["ssim_consecutive"] == pytest.approx(reference.tolist(), abs=2e-6)


def test_half_precision_frames_give_the_float32_results():
    frames = _real_clip("vid_h264.mp4", 4, 150, (72, 128))
    half = loop_metrics(frames.half(), frames[:1])
    full = loop_metrics(frames.half().float(), frames[:1])
    for key in ("loop_c", "fc", "clip_i", "mse_f0", "motion", "seam_step"):
        assert half[key] == pytest.approx(full[key], abs=1e-9), key


def test_a_long_video_is_embedded_in_batches_with_the_same_result():
    frames = _real_clip("vid_h264.mp4", 2 * EMBED_BATCH + 3, 150, (36, 64))
    calls = []

    def embed(batch):
        calls.append(batch.shape[0])
        return pixel_embedding(batch)

    m = loop_metrics(frames, frames[:1], embed)
    assert calls == [EMBED_BATCH, EMBED_BATCH, 3, 1] and max(calls) <= EMBED_BATCH
    e = pixel_embedding(frames)
    assert m["fc"] == pytest.approx(float(cosine(e[:-1], e[1:]).mean()), abs=1e-12)
    assert m["loop_c"] == pytest.approx(float(cosine(e[:1], e[-1:])[0]), abs=1e-12)


def test_ssim_pair_does_not_change_its_inputs():
    a, b = torch.rand(20, 30, 3), torch.rand(20, 30, 3)
    a0, b0 = a.clone(), b.clone()
    ssim_pair(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 24, 30, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)


def test_ssim_matches_the_reference_formula_on_small_arrays():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 16, 19, 3, generator=g)
    b = (a + 0.2 * torch.rand(2, 16, 19, 3, generator=g)).clamp(0, 1)
    ours = ssim(a, b)
    for k in range(2):
        assert abs(float(ours[k]) - _reference_ssim(a[k].double().numpy(), b[k].double().numpy())) < 1e-6
    assert gaussian_window().sum().item() == pytest.approx(1.0)


def test_a_known_shift_gives_a_known_ssim_drop():
    # A horizontal ramp a(x) = s*x shifted right by d pixels is the ramp minus s*d. Local variances and covariance
    # are unchanged, so SSIM's contrast-structure term is exactly 1 and only the luminance term drops:
    # SSIM(x0) = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1), mu_a = s*x0, mu_b = s*(x0 - d).
    h, w, s, d = 20, 40, 0.02, 10
    xs = torch.arange(w, dtype=torch.float64)
    a = (s * xs + 0.1).expand(h, w)
    b = (s * (xs - d) + 0.1).expand(h, w)
    img = lambda t: t[None, :, :, None].expand(1, h, w, 3).float()  # noqa: E731  (a one-line helper)
    got = float(ssim(img(a), img(b))[0])
    c1 = 0.01 ** 2
    centres = s * torch.arange(5, w - 5, dtype=torch.float64) + 0.1  # window centres of the valid region
    mu_a, mu_b = centres, centres - s * d
    expected = float(((2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)).mean())
    assert got == pytest.approx(expected, abs=1e-5)
    assert got < 0.9  # a visible drop, not a rounding effect


def _frames_from_photo(offsets, size=(64, 96)):
    img = cv2.imread(str(TEST_DATA / "photos" / "astronaut.png"))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    h, w = size
    out = [img[60 + dy:60 + dy + h, 80 + dx:80 + dx + w] for dx, dy in offsets]
    return torch.from_numpy(np.stack(out)), torch.from_numpy(img[60:60 + h, 80:80 + w])[None]


def test_identical_frames_give_perfect_scores():
    frames, image = _frames_from_photo([(0, 0)] * 5)
    m = loop_metrics(frames, image)
    assert m["loop_c"] == pytest.approx(1.0, abs=1e-9) and m["fc"] == pytest.approx(1.0, abs=1e-9)
    assert m["clip_i"] == pytest.approx(1.0, abs=1e-9)
    assert m["mse_f0"] == 0.0 and m["motion"] == pytest.approx(0.0, abs=1e-6)
    assert m["embedding"] == "pixel" and m["notes"] == []


def test_a_loop_ranks_above_a_drift_and_motion_ranks_moving_above_still():
    loop_path = [(0, 0), (4, 2), (8, 4), (12, 6), (8, 4), (4, 2), (0, 0)]  # out and back: last frame == first
    drift_path = [(0, 0), (4, 2), (8, 4), (12, 6), (16, 8), (20, 10), (24, 12)]
    still_path = [(0, 0)] + [(1, 0), (0, 0)] * 3
    loop = loop_metrics(*_frames_from_photo(loop_path))
    drift = loop_metrics(*_frames_from_photo(drift_path))
    still = loop_metrics(*_frames_from_photo(still_path))
    assert loop["loop_c"] == pytest.approx(1.0, abs=1e-9) and drift["loop_c"] < 0.95
    assert loop["clip_i"] > drift["clip_i"]
    assert still["motion"] < loop["motion"] and still["fc"] > loop["fc"]
    assert 0.0 < loop["motion"] < 1.0


def test_a_given_embedding_is_used_and_labelled():
    frames, image = _frames_from_photo([(0, 0), (3, 0), (0, 0)])
    proj = torch.randn(64 * 96 * 3, 16, generator=torch.Generator().manual_seed(0))
    calls = []

    def embed(batch):
        calls.append(batch.shape)
        return batch.reshape(batch.shape[0], -1) @ proj

    m = loop_metrics(frames, image, embed)
    assert m["embedding"] == "clip" and calls == [(3, 64, 96, 3), (1, 64, 96, 3)]  # the frames, then the image
    e = embed(frames)
    assert m["loop_c"] == pytest.approx(float(cosine(e[:1], e[2:])[0]), abs=1e-6)
    assert "Loop-C (clip)" in format_metrics(m)


def test_input_image_of_another_size_is_resized_and_reported():
    frames, image = _frames_from_photo([(0, 0), (2, 0)])
    big = torch.nn.functional.interpolate(image.permute(0, 3, 1, 2), size=(128, 192), mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1)
    before = big.clone()
    m = loop_metrics(frames, big)
    assert any("resized" in n for n in m["notes"]) and "resized" in format_metrics(m)
    resized = center_resize(big.movedim(-1, 1), 64, 96).movedim(1, -1).clamp(0, 1)
    assert m["mse_f0"] == pytest.approx(float(((frames[0] - resized[0]) ** 2).mean()) * 255 ** 2, rel=1e-6)
    other = loop_metrics(frames, torch.flip(big, dims=[1, 2]))  # the same size, a different picture
    assert m["mse_f0"] < 0.2 * other["mse_f0"]
    assert torch.equal(big, before)
    wide = center_resize(torch.rand(1, 3, 50, 200), 64, 96).movedim(1, -1)
    assert wide.shape == (1, 64, 96, 3)


def test_pixel_embedding_and_cosine():
    e = pixel_embedding(torch.rand(2, 40, 50, 3))
    assert e.shape == (2, 32 * 32 * 3) and e.min() >= -1 and e.max() <= 1
    assert float(cosine(torch.zeros(1, 3), torch.zeros(1, 3))[0]) == 1.0
    assert float(cosine(torch.tensor([[1.0, 0]]), torch.tensor([[-1.0, 0]]))[0]) == -1.0


def test_bad_input_is_refused_with_a_clear_message():
    frames, image = _frames_from_photo([(0, 0), (1, 0)])
    with pytest.raises(ValueError, match="frames: 1 frame; give at least 2 frames"):
        loop_metrics(frames[:1], image)
    with pytest.raises(ValueError, match=r"frames: an empty batch \(0 frames\)"):
        loop_metrics(frames[:0], image)
    bad = frames.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="frames: frame 0 contains NaN"):
        loop_metrics(bad, image)
    with pytest.raises(ValueError, match="image: expected an IMAGE batch"):
        loop_metrics(frames, image[0])
    m = loop_metrics(frames, torch.cat([image, image]))
    assert any("first one" in n for n in m["notes"])


def test_plot_is_an_image_with_the_curves():
    m = loop_metrics(*_frames_from_photo([(0, 0), (4, 2), (8, 4), (4, 2), (0, 0)]))
    plot = render_plot(m)
    assert plot.shape == (384, 768, 3) and plot.dtype == np.float32
    assert 0 <= plot.min() and plot.max() <= 1
    blue = (np.abs(plot[..., 0] - 31 / 255) < 0.02) & (np.abs(plot[..., 2] - 180 / 255) < 0.02)
    assert blue.sum() > 100  # the cos-to-first-frame curve was drawn
    assert math.isfinite(m["motion"])


def test_seam_step_tells_a_repeated_closing_frame_a_seamless_loop_and_a_jump():
    frames = torch.from_numpy(read_frames(TEST_DATA / "video" / "vid_h264.mp4", 9, 150)).float() / 255.0
    frames = torch.nn.functional.interpolate(frames.movedim(-1, 1), size=(72, 128), mode="area").movedim(1, -1)
    forward = frames[:5]
    loop = torch.cat([forward, forward.flip(0)[1:]])  # 0 1 2 3 4 3 2 1 0: ends on a copy of its first frame
    closed = seam_step(loop)
    assert closed["seam_step"] == 0.0 and "twice" in closed["seam_verdict"]
    trimmed = seam_step(loop[:-1])  # without the closing frame: the seam 1 -> 0 is a step like the others
    assert trimmed["seam_step"] == pytest.approx(float((loop[1] - loop[0]).abs().mean()))
    assert 0.2 <= trimmed["seam_ratio"] <= 1.5 and trimmed["seam_verdict"].startswith("seamless")
    jump = seam_step(frames)  # a clip that walks on: last -> first jumps
    assert jump["seam_ratio"] > 1.5 and "jump" in jump["seam_verdict"]
    assert "seam step (last -> first)" in format_metrics(loop_metrics(loop, loop[:1]))


@pytest.mark.parametrize("frames_shape, image_shape", [
    ((3, 1, 1000, 3), (1, 64, 96, 3)),    # a 1 px tall video: the image's centre crop would round to 0 px
    ((3, 1000, 1, 3), (1, 1, 1000, 3)),   # a 1 px wide video, an image of the opposite extreme
    ((3, 64, 96, 3), (1, 1, 1000, 3)),    # an extreme image for an ordinary video
    ((3, 1, 1000, 1), (1, 1, 1000, 1)),   # one channel, 1 x 1000, no resize
    ((2, 1, 1, 3), (1, 5, 5, 3)),         # 1 x 1 frames: a 1 x 1 SSIM window
])
def test_extreme_aspect_ratios_give_finite_metrics(frames_shape, image_shape):
    g = torch.Generator().manual_seed(0)
    frames, image = torch.rand(frames_shape, generator=g), torch.rand(image_shape, generator=g)
    m = loop_metrics(frames, image)
    for key in ("loop_c", "fc", "clip_i", "mse_f0", "motion", "seam_step"):
        assert math.isfinite(m[key]), (key, m[key])
    assert len(m["ssim_consecutive"]) == frames_shape[0] - 1
    assert (image_shape[1:3] != frames_shape[1:3]) == any("resized" in n for n in m["notes"])
    same = loop_metrics(frames[:1].expand(3, -1, -1, -1), frames[:1])  # a still video of the same shape
    assert same["motion"] == pytest.approx(0.0, abs=1e-6) and same["loop_c"] == pytest.approx(1.0, abs=1e-9)


def test_centre_crop_of_an_extreme_aspect_ratio_keeps_a_pixel():
    out = center_resize(torch.rand(1, 3, 64, 96), 1, 1000)  # the aspect 1000:1 crop of 64 rows is 0.1 px
    assert out.shape == (1, 3, 1, 1000) and torch.isfinite(out).all()
    assert center_resize(torch.rand(1, 3, 96, 64), 1000, 1).shape == (1, 3, 1000, 1)


def test_nan_in_the_input_image_and_a_one_frame_video_are_refused_by_name():
    frames, image = _frames_from_photo([(0, 0), (1, 0), (2, 0)])
    bad = image.clone()
    bad[0, 3, 3, 1] = float("inf")
    with pytest.raises(ValueError, match="image: frame 0 contains NaN or infinite values"):
        loop_metrics(frames, bad)
    late = frames.clone()
    late[2, 5, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="frames: frame 2 contains NaN or infinite values"):
        loop_metrics(late, image)
    with pytest.raises(ValueError, match="frames: 1 frame.*at least 2"):
        loop_metrics(frames[:1], image)
