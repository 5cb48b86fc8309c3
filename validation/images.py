"""The one check of an IMAGE batch (ComfyUI's IMAGE: float [frames, height, width, channels], values 0..1), used by
every core that takes frames and by every node through it, so a bad IMAGE gets one message wherever it goes in.

    frames = image_batch(frames, "frames", min_frames=2, rgb=True)  # SettingError naming "frames", else RGB frames
    same_size(reference, candidate, ("reference", "candidate"))     # one frame count and one size
"""
from __future__ import annotations

import torch

from .settings import SettingError

CHANNELS = {1: "1 (grey)", 3: "3 (RGB)", 4: "4 (RGBA)"}
FINITE_BLOCK = 1 << 24  # values checked for NaN/inf per pass: a bounded mask, never one the size of the whole video


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def describe(images: torch.Tensor) -> str:
    """'6 frames of 160x96 (shape [6, 96, 160, 3])': frame count, width x height, the tensor's shape."""
    return f"{_frames(images.shape[0])} of {images.shape[2]}x{images.shape[1]} (shape {list(images.shape)})"


def _first_non_finite(images: torch.Tensor) -> int | None:
    """The first frame holding a NaN or infinite value, or None; a block of frames at a time."""
    per_block = max(1, FINITE_BLOCK // max(1, images[0].numel()))
    for start in range(0, images.shape[0], per_block):
        bad = ~torch.isfinite(images[start:start + per_block]).flatten(1).all(1)
        if bool(bad.any()):
            return start + int(bad.nonzero()[0])
    return None


def image_batch(images: torch.Tensor, name: str, min_frames: int = 1, rgb: bool = False,
                channels: tuple[int, ...] = (1, 3, 4), why: str = "") -> torch.Tensor:
    """`images` checked as an IMAGE batch named `name`: a float tensor [frames, height, width, C] with C in
    `channels` (of 1 grey, 3 RGB, 4 RGBA), at least `min_frames` frames (`why` says why, in the message), frames of
    at least 1x1 pixel, finite values. Raises SettingError naming `name` and saying what would be valid.
    Returns the batch; with rgb=True as RGB [frames, height, width, 3] (a view: grey repeated into R, G and B, alpha
    dropped) for code that needs colour."""
    allowed = [CHANNELS[c] for c in sorted(channels)]
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in channels:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise SettingError(name, f"{name}: expected an IMAGE batch [frames, height, width, channels] with "
                                 f"{_listed(allowed)} channels, got {got}")
    if not images.is_floating_point():
        raise SettingError(name, f"{name}: expected float pixel values in 0..1 (an IMAGE), got {images.dtype}")
    if images.shape[0] < min_frames:
        got = "an empty batch (0 frames)" if images.shape[0] == 0 else _frames(images.shape[0])
        raise SettingError(name, f"{name}: {got}; give at least {_frames(min_frames)}" + (f" ({why})" if why else ""))
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise SettingError(name, f"{name}: empty frames of {images.shape[2]}x{images.shape[1]} pixels (width x "
                                 f"height, shape {tuple(images.shape)}); give frames of at least 1x1 pixel")
    bad = _first_non_finite(images) if images.shape[0] else None
    if bad is not None:
        raise SettingError(name, f"{name}: frame {bad} contains NaN or infinite values; give finite pixel values "
                                 f"in 0..1")
    if rgb and images.shape[-1] != 3:
        images = images[..., :3] if images.shape[-1] == 4 else images.expand(-1, -1, -1, 3)
    return images


def same_size(first: torch.Tensor, second: torch.Tensor, names: tuple[str, str], frames: bool = True,
              advice: str = "give batches of one frame count and one size (trim or resize one)") -> None:
    """Two checked IMAGE batches of one frame size (and, with frames=True, one frame count); else SettingError
    naming both (the first as its setting) with `advice`."""
    axes = slice(0, 3) if frames else slice(1, 3)
    if first.shape[axes] != second.shape[axes]:
        raise SettingError(names[0], f"{names[0]} and {names[1]} differ: {names[0]} is {describe(first)}, "
                                     f"{names[1]} is {describe(second)}; {advice}")
