"""The codec's two precisions (codec.types): frames on the 8-bit grid keep the uint8 / int16 path; any other float32
frames (ComfyUI 0.30.0's LoadVideo, float nodes) are coded as float32 with int32 differences of bit patterns, bit for
bit exact for every float32 value (near 0 and 1, denormals, -0.0, negatives, NaN payloads), with the vectors the
8-bit search finds on round(x * 255)."""
import numpy as np
import pytest
import torch

from tests.conftest import TEST_DATA
from vcut.bench.clips import read_frames
from vcut.codec import (
    codec_frames,
    codec_to_image,
    decode,
    encode,
    image_to_residual,
    image_to_uint8,
    predict,
    residual_to_image,
    residuals_for,
    uint8_to_image,
)


def bits(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int32)


def real_float_clip(count=5):
    """A real clip crop as float32 off the 8-bit grid (as a float decoder gives it): x / 255 plus a slight gain."""
    frames = read_frames(TEST_DATA / "video" / "car-detection.mp4", count, 150)[:, 180:261, 250:363]
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0).mul_(0.9993).add_(3e-4)


def hard_values(shape, seed=0):
    """Random float32 frames with the values an exact codec must keep: 0, 1, their float32 neighbours, the smallest
    denormals, -0.0, a negative, a value above 1 and a NaN."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    special = torch.tensor([0.0, 1.0, -0.0, 1e-45, 2e-45, 1.17e-38, -1e-7, 1.0000001,
                            float(np.nextafter(np.float32(1), np.float32(0))), float(np.nextafter(np.float32(0), 1)),
                            float("nan")], dtype=torch.float32)
    flat = x.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)[:special.numel() * 20]
    flat[idx] = special.repeat(20)
    return x


def test_eight_bit_detection():
    v = torch.randint(0, 256, (2, 8, 9, 3), dtype=torch.uint8)
    for image in (uint8_to_image(v), torch.from_numpy(v.numpy().astype(np.float32) / 255.0)):  # torch, LoadImage
        frames = codec_frames(image)
        assert frames.dtype == torch.uint8 and torch.equal(frames, v)
    for change in (lambda x: x.__setitem__((0, 0, 0, 0), 0.5), lambda x: x.__setitem__((1, 2, 3, 1), -0.0),
                   lambda x: x.__setitem__((1, 2, 3, 1), 1e-45), lambda x: x.__setitem__((0, 1, 1, 2), 1.0000001)):
        image = uint8_to_image(v)
        change(image)
        frames = codec_frames(image)
        assert frames.dtype == torch.float32 and torch.equal(bits(frames), bits(image))  # one value off the grid
    assert torch.equal(bits(codec_to_image(codec_frames(uint8_to_image(v)))), bits(uint8_to_image(v)))


@pytest.mark.parametrize("threads,backend", [(2, "auto"), (1, "auto"), (1, "torch")])
def test_float32_frames_round_trip_bit_for_bit(threads, backend):
    frames = hard_values((4, 37, 45, 3))
    frames[1:, :, 5:] = frames[:-1, :, :-5]  # some motion for the search to find
    mv, res = encode(frames, 8, 6, threads=threads, backend=backend)
    assert mv.precision == "float32" and res.dtype == torch.int32 and res.shape == (3, 37, 45, 3)
    out = decode(frames[0], mv, res)
    assert out.dtype == torch.float32 and torch.equal(bits(out), bits(frames))
    image = residual_to_image(res)  # the float64 residual IMAGE and back: exact
    assert image.dtype == torch.float64 and 0.25 <= image.min() and image.max() < 0.75
    assert torch.equal(image_to_residual(image), res)
    assert torch.equal(bits(decode(frames[0], mv, image_to_residual(image))), bits(frames))


def test_float32_vectors_are_the_8bit_search_and_a_real_clip_is_exact():
    frames = real_float_clip()
    assert codec_frames(frames).dtype == torch.float32
    for block, method in ((16, "fast"), (8, "exhaustive")):
        mv, res = encode(frames, block, 8, method)
        mv8, _ = encode(image_to_uint8(frames), block, 8, method)
        assert torch.equal(mv.vectors, mv8.vectors) and mv8.precision == "uint8"
        assert torch.equal(bits(decode(frames[0], mv, res)), bits(frames))
        assert torch.equal(residuals_for(frames, mv), res)
    moving = (mv.vectors != 0).any()
    assert moving  # a real clip: the vectors are not all zero


def test_float32_motion_only_scale_and_precision_errors():
    frames = real_float_clip(4)
    mv, res = encode(frames, 16, 8)
    pure = decode(frames[0], mv)
    expect = frames[0]
    for i in range(3):  # no residual: the warp chain of the float first frame (exact copies)
        expect = predict(expect, mv.vectors[i], 16)
        assert torch.equal(bits(pure[i + 1]), bits(expect))
    assert torch.equal(decode(frames[0], mv, res, residual_scale=0.0), pure)
    half = decode(frames[0], mv, res, residual_scale=0.5)
    pred = predict(frames[0], mv.vectors[0], 16)
    assert torch.equal(half[1], (pred + 0.5 * (frames[1] - pred)).clamp(0, 1))  # pred + scale (exact - pred)
    mv8, res8 = encode(image_to_uint8(frames), 16, 8)
    with pytest.raises(ValueError, match="first_frame is torch.uint8 but the motion vectors are for float32"):
        decode(image_to_uint8(frames[0]), mv, res)
    with pytest.raises(ValueError, match="first_frame is torch.float32 but the motion vectors are for uint8"):
        decode(frames[0], mv8, res8)
    with pytest.raises(ValueError, match="residuals are torch.int16 but float32-precision motion vectors take "
                                         "torch.int32"):
        decode(frames[0], mv, res8)
    with pytest.raises(ValueError, match="frames are torch.uint8 but the motion vectors are for float32"):
        residuals_for(image_to_uint8(frames), mv)


def test_float_residual_image_mapping_is_exact_and_refuses_other_images():
    d = torch.tensor([-2 ** 31, -1, 0, 1, 12345, 2 ** 31 - 1], dtype=torch.int32)
    image = residual_to_image(d)
    assert image[2].item() == 0.5 and torch.equal(image_to_residual(image), d)
    with pytest.raises(ValueError, match="float64 residual IMAGE must hold 0.5 \\+ d / 2\\^33"):
        image_to_residual(torch.full((3,), 0.3, dtype=torch.float64))
