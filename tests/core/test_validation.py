"""validation/: the one IMAGE-batch check every core and node uses, and SettingError, the error that names the
setting. Every rule of image_batch is refused with a message that starts with the name the caller gave and says what
would be valid; the checked batch comes back (as RGB where asked) without a copy."""
import pytest
import torch

from vcut.validation import SettingError, describe, image_batch, same_size
from vcut.validation import images as validation_images


def refused(call, name: str, message: str) -> SettingError:
    with pytest.raises(SettingError, match=message) as caught:
        call()
    assert caught.value.setting == name and str(caught.value).startswith(name)  # the message starts with the name
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError still do
    return caught.value


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(4, 8, 8), r"expected an IMAGE batch \[frames, height, width, channels\] with 1 \(grey\), 3 \(RGB\) "
                           r"or 4 \(RGBA\) channels, got \(4, 8, 8\)"),
    (torch.zeros(1, 2, 4, 8, 3), r"got \(1, 2, 4, 8, 3\)"),
    (torch.zeros(2, 8, 8, 2), r"channels, got \(2, 8, 8, 2\)"),
    ("frames", "got str"),
    (None, "got NoneType"),
])
def test_a_batch_of_another_shape_or_type_is_refused_by_name(bad, message):
    refused(lambda: image_batch(bad, "segment_2"), "segment_2", "segment_2: .*" + message)


def test_integer_pixels_are_refused():
    refused(lambda: image_batch(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "frames"), "frames",
            r"frames: expected float pixel values in 0..1 \(an IMAGE\), got torch.uint8")


def test_too_few_frames_name_the_minimum_and_why():
    refused(lambda: image_batch(torch.zeros(0, 8, 8, 3), "images"), "images",
            r"images: an empty batch \(0 frames\); give at least 1 frame$")
    refused(lambda: image_batch(torch.zeros(1, 8, 8, 3), "frames", min_frames=2), "frames",
            r"frames: 1 frame; give at least 2 frames$")
    refused(lambda: image_batch(torch.zeros(2, 8, 8, 3), "images", min_frames=3, why="a loop closes on frame 0"),
            "images", r"images: 2 frames; give at least 3 frames \(a loop closes on frame 0\)$")
    assert image_batch(torch.zeros(3, 8, 8, 3), "images", min_frames=3).shape[0] == 3


@pytest.mark.parametrize("shape", [(2, 0, 8, 3), (2, 8, 0, 3), (1, 0, 0, 1)])
def test_empty_frames_are_refused(shape):
    refused(lambda: image_batch(torch.zeros(shape), "image"), "image",
            rf"image: empty frames of {shape[2]}x{shape[1]} pixels .*give frames of at least 1x1 pixel")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_name_the_first_bad_frame(value, monkeypatch):
    video = torch.rand(7, 6, 5, 3, generator=torch.Generator().manual_seed(0))
    video[4, 1, 2, 0] = value
    video[6, 0, 0, 1] = value
    refused(lambda: image_batch(video, "candidate"), "candidate",
            "candidate: frame 4 contains NaN or infinite values; give finite pixel values in 0..1")
    monkeypatch.setattr(validation_images, "FINITE_BLOCK", 90)  # one frame per block: the same frame is found
    refused(lambda: image_batch(video, "candidate"), "candidate", "candidate: frame 4 contains")
    video[4, 1, 2, 0] = 0.5
    refused(lambda: image_batch(video, "candidate"), "candidate", "candidate: frame 6 contains")


def test_channels_the_caller_allows():
    grey = torch.rand(2, 4, 4, 1)
    refused(lambda: image_batch(grey, "images", channels=(3, 4)), "images",
            r"images: expected an IMAGE batch .* with 3 \(RGB\) or 4 \(RGBA\) channels, got \(2, 4, 4, 1\)")
    refused(lambda: image_batch(torch.rand(2, 4, 4, 4), "images", channels=(1, 3)), "images",
            r"with 1 \(grey\) or 3 \(RGB\) channels, got \(2, 4, 4, 4\)")
    refused(lambda: image_batch(grey, "images", channels=(3,)), "images", r"with 3 \(RGB\) channels, got")


def test_the_checked_batch_comes_back_as_rgb_where_asked():
    rgb = torch.rand(2, 4, 5, 3)
    assert image_batch(rgb, "x") is rgb and image_batch(rgb, "x", rgb=True) is rgb
    grey = torch.rand(2, 4, 5, 1)
    assert image_batch(grey, "x") is grey
    as_rgb = image_batch(grey, "x", rgb=True)
    assert as_rgb.shape == (2, 4, 5, 3) and all(torch.equal(as_rgb[..., c], grey[..., 0]) for c in range(3))
    rgba = torch.rand(2, 4, 5, 4)
    assert torch.equal(image_batch(rgba, "x", rgb=True), rgba[..., :3])
    assert image_batch(rgba, "x", rgb=True).data_ptr() == rgba.data_ptr()  # a view, never a copy of the video
    assert image_batch(torch.rand(1, 1, 1, 3, dtype=torch.float64), "x").dtype == torch.float64


def test_two_batches_of_another_count_or_size_name_both():
    a, b = torch.zeros(6, 96, 160, 3), torch.zeros(5, 96, 160, 4)
    error = refused(lambda: same_size(a, b, ("reference", "candidate")), "reference",
                    r"reference and candidate differ: reference is 6 frames of 160x96 \(shape \[6, 96, 160, 3\]\), "
                    r"candidate is 5 frames of 160x96 \(shape \[5, 96, 160, 4\]\); give batches of one frame count "
                    r"and one size \(trim or resize one\)$")
    assert "candidate" in str(error)
    same_size(a, torch.zeros(6, 96, 160, 1), ("a", "b"))  # channels may differ
    same_size(a, b, ("a", "b"), frames=False)  # frame counts may differ where the caller says so
    refused(lambda: same_size(a, a[:, :, :80], ("a", "b"), frames=False, advice="resize one"), "a",
            r"b is 6 frames of 80x96 \(shape \[6, 96, 80, 3\]\); resize one$")
    assert describe(torch.zeros(1, 2, 3, 3)) == "1 frame of 3x2 (shape [1, 2, 3, 3])"


def test_a_setting_error_renamed_names_the_input():
    error = SettingError("frames", "frames: the video has 0 frames; need at least 1")
    renamed = error.renamed("samples")
    assert renamed.setting == "samples" and str(renamed) == "samples: the video has 0 frames; need at least 1"
    sentence = SettingError("cut_fraction", "cut_fraction must be 0 (use cut_step) or in (0, 1], got 2")
    assert str(sentence.renamed("fraction")) == "fraction must be 0 (use cut_step) or in (0, 1], got 2"
    assert str(SettingError("x", "out of range").renamed("y")) == "y: out of range"
