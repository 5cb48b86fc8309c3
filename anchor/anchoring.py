"""Frame anchoring math (STIV frame replacement, training-free on SVD). No ComfyUI import.

STIV replaces the first noisy frame of the video latent by the ground-truth image latent. SVD was not trained
that way, so the training-free form keeps every frame at the sampler's noise level: at each step the anchored
frames of the model input are the anchor *at the current noise level* (x_t = anchor + sigma * noise, the EDM
forward process that ComfyUI's SVD model uses) and the anchored frames of the denoised output are the clean anchor.

Shapes follow ComfyUI's SVD latent: [frames, channels, h, w] (frames are the batch dimension). A "keep" mask is
[frames, 1, h, w] with 1 where the latent is anchored, 0 where it is free, soft values at mask edges.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def parse_frame_list(text: str, num_frames: int, name: str = "frames") -> list[int]:
    """Parse "0", "0,-1" or "0, 12, 24" into sorted-as-given non-negative frame indices.

    Negative indices count from the end (-1 is the last frame), as in Python. Out-of-range and duplicate frames
    (also after resolving negatives, e.g. "0,-14" on 14 frames) raise ValueError naming `name`.
    """
    if num_frames < 1:
        raise ValueError(f"{name}: the video has no frames")
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError(f"{name}: give at least one frame index, e.g. '0' (first), '0,-1' (first and last)")
    frames: list[int] = []
    for part in parts:
        try:
            index = int(part)
        except ValueError:
            raise ValueError(f"{name}: '{part}' is not a whole number; use comma-separated indices "
                             f"such as '0,-1'") from None
        if not -num_frames <= index < num_frames:
            raise ValueError(f"{name}: frame {index} is out of range for {num_frames} frames "
                             f"(valid: 0..{num_frames - 1} or -{num_frames}..-1)")
        resolved = index % num_frames
        if resolved in frames:
            raise ValueError(f"{name}: frame {index} is listed twice (it is frame {resolved} of {num_frames})")
        frames.append(resolved)
    return frames


def center_resize(t: torch.Tensor, height: int, width: int, mode: str = "bilinear") -> torch.Tensor:
    """Centre-crop [B, C, H, W] to the aspect of (height, width), then interpolate: what ComfyUI's
    `common_upscale(..., crop="center")` does for SVD_img2vid_Conditioning (images) and SVD's extra_conds (latents).
    Returns the input itself when it already has that size."""
    if t.ndim != 4:
        raise ValueError(f"center_resize expects [B, C, H, W], got shape {tuple(t.shape)}")
    old_h, old_w = t.shape[-2], t.shape[-1]
    if (old_h, old_w) == (height, width):
        return t
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    x, y = min(x, (old_w - 1) // 2), min(y, (old_h - 1) // 2)  # an extreme aspect ratio keeps >= 1 px, never 0
    cropped = t.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(cropped, size=(height, width), mode=mode, align_corners=False)
    return F.interpolate(cropped, size=(height, width), mode=mode)


def mask_to_latent(mask: torch.Tensor, height: int, width: int, name: str = "mask") -> torch.Tensor:
    """A ComfyUI MASK ([H, W] or [B, H, W], values 0..1, pixel space) -> [B, 1, height, width] in latent space.

    Area averaging after a centre crop, so an 8x8-block-aligned binary mask stays exactly binary in the latent."""
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a MASK of shape [H, W] or [frames, H, W], got "
                         f"{tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__}")
    m = mask.float()
    if m.ndim == 2:
        m = m[None]
    if m.shape[0] == 0 or m.shape[-1] == 0 or m.shape[-2] == 0:
        raise ValueError(f"{name}: the mask is empty (shape {tuple(mask.shape)})")
    if torch.isnan(m).any():
        raise ValueError(f"{name}: the mask contains NaN values")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"{name}: mask values must lie in [0, 1], got [{float(m.min()):.3g}, {float(m.max()):.3g}]")
    return center_resize(m[:, None], height, width, mode="area").clamp(0.0, 1.0)


def frame_keep_mask(num_frames: int, frames: list[int], height: int, width: int,
                    spatial: torch.Tensor | None = None) -> torch.Tensor:
    """Keep mask [num_frames, 1, h, w]: the listed frames are anchored (1, or the spatial mask there), others 0.

    `spatial` is None (whole frame), [1, 1, h, w] (same region on every anchored frame) or [len(frames), 1, h, w]
    (one region per listed frame, in the order listed)."""
    keep = torch.zeros(num_frames, 1, height, width)
    if spatial is not None and spatial.shape[0] not in (1, len(frames)):
        raise ValueError(f"mask: {spatial.shape[0]} masks for {len(frames)} anchored frames; "
                         f"give 1 mask or one per anchored frame")
    for j, f in enumerate(frames):
        keep[f] = 1.0 if spatial is None else spatial[j if spatial.shape[0] > 1 else 0].to(keep)
    return keep


def place_anchors(num_frames: int, frames: list[int], anchors: torch.Tensor) -> torch.Tensor:
    """Per-frame anchor tensor [num_frames, C, h, w]: anchors[j] at frames[j] (one anchor serves all), zeros
    elsewhere."""
    if anchors.ndim != 4:
        raise ValueError(f"anchor: expected a latent [frames, C, h, w], got shape {tuple(anchors.shape)}")
    if anchors.shape[0] not in (1, len(frames)):
        raise ValueError(f"anchor: {anchors.shape[0]} anchor frames for {len(frames)} listed frames; "
                         f"give 1 anchor (used for every listed frame) or exactly one per listed frame")
    out = torch.zeros((num_frames,) + tuple(anchors.shape[1:]), dtype=anchors.dtype, device=anchors.device)
    for j, f in enumerate(frames):
        out[f] = anchors[j if anchors.shape[0] > 1 else 0]
    return out


def noise_level_anchor(anchor: torch.Tensor, sigma: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
    """The anchor at noise level sigma: x_t = anchor + sigma * noise (EDM forward process; ComfyUI's SVD model is
    V_PREDICTION_EDM and its noise_scaling is exactly this). `sigma` is a scalar or one value per frame row."""
    sigma = torch.as_tensor(sigma, dtype=noise.dtype, device=noise.device)
    if sigma.ndim > 0 and sigma.numel() > 1:
        sigma = sigma.reshape((-1,) + (1,) * (noise.ndim - 1))
    return anchor + sigma * noise


def blend(x: torch.Tensor, anchor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Frame replacement: anchor where keep == 1 (exactly, bit for bit), x where keep == 0, linear in between.
    Never modifies its inputs."""
    keep = keep.to(device=x.device, dtype=x.dtype)
    anchor = anchor.to(device=x.device, dtype=x.dtype)
    mixed = x * (1.0 - keep) + anchor * keep
    return torch.where(keep >= 1.0, anchor, torch.where(keep <= 0.0, x, mixed))


def check_anchor_steps(fraction: float) -> None:
    """anchor_steps: the fraction of the sampling steps that are anchored, in [0, 1]."""
    if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"anchor_steps must be a fraction in [0, 1], got {fraction}")


def anchored_step_count(fraction: float, total_steps: int) -> int:
    """How many of the schedule's first steps are anchored: round(fraction * steps), at least 1 when fraction > 0."""
    check_anchor_steps(fraction)
    if total_steps < 1 or fraction == 0.0:
        return 0
    return max(1, min(total_steps, int(round(fraction * total_steps))))


class AnchorSchedule:
    """Decides from a model call's sigma whether anchoring is on, given the running schedule (N + 1 sigmas).

    Steps 0..n-1 (n = anchored_step_count) are anchored: a call is anchored when its sigma is above the sigma
    that ends step n-1. With fraction 1 every call is anchored and the finished latent is snapped to the anchor."""

    def __init__(self, sigmas: torch.Tensor, fraction: float):
        values = [float(s) for s in torch.as_tensor(sigmas).flatten()]
        self.total_steps = max(len(values) - 1, 0)
        self.anchored_steps = anchored_step_count(fraction, self.total_steps)
        self.whole_schedule = self.anchored_steps >= self.total_steps and self.total_steps > 0
        self.threshold = values[self.anchored_steps] if self.anchored_steps < len(values) else -math.inf

    def active(self, sigma: float) -> bool:
        if self.anchored_steps == 0:
            return False
        if self.whole_schedule:
            return True
        return sigma > self.threshold * (1.0 + 1e-5)


def one_image_latent(image_latent: torch.Tensor) -> torch.Tensor:
    """One encoded image [1, C, h, w] (what SVD_img2vid_Conditioning puts in concat_latent_image), else an error."""
    if image_latent.ndim != 4 or image_latent.shape[0] != 1:
        raise ValueError(f"image latent: expected one encoded image [1, C, h, w], "
                         f"got shape {tuple(image_latent.shape)}")
    return image_latent


def repeat_layout(image_latent: torch.Tensor, frames: int) -> torch.Tensor:
    """SVD's own concat layout (what it was trained on): the image latent on every frame."""
    z = one_image_latent(image_latent)
    return z.expand((frames,) + tuple(z.shape[1:])).clone()
