"""Anchoring recipes as plans (no ComfyUI import): what a node attaches to a cloned SVD model.

A plan holds, in LATENT space ([frames, C, h, w], frames = SVD's batch dimension):
- anchors: the anchor of every frame (zeros where a frame is free);
- keep: [frames, 1, h, w], 1 where the latent is anchored (STIV frame replacement, see anchoring.py);
- init: the LATENT to sample, with the anchors already written in;
- concat: the concat_latent_image layout for the conditioning, or None to leave the conditioning as it is.

frame_replace_plan: STIV Frame Replace (first frame, first + last = interpolation, keyframes such as 0,12,24).
continuation_plan: Video Extend, the first k frames of a new segment anchored to the previous segment's last k.
Loop Conditioning's plan (LoopAnimate's inference recipe) is ../loop/conditioning.loop_plan.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import anchoring


@dataclass(frozen=True)
class AnchorPlan:
    anchors: torch.Tensor
    keep: torch.Tensor
    init: torch.Tensor
    concat: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return self.anchors.shape[0]

    def anchored_frames(self) -> list[int]:
        """Frames with any anchored cell."""
        return [i for i in range(self.frames) if float(self.keep[i].max()) > 0]


def check_latent_values(samples: torch.Tensor, name: str) -> None:
    if not torch.isfinite(samples).all():
        raise ValueError(f"{name}: the latent contains NaN or infinite values; sample or encode it again")


def frame_replace_plan(samples: torch.Tensor, frames: list[int], anchors: torch.Tensor,
                       spatial: torch.Tensor | None = None) -> AnchorPlan:
    """The listed frames of the video latent `samples` anchored to `anchors` (1 anchor for all, or one per listed
    frame, in order), optionally only inside `spatial` ([1 or len(frames), 1, h, w])."""
    check_latent_values(samples, "latent")
    check_latent_values(anchors, "anchor")
    n, _, h, w = samples.shape
    keep = anchoring.frame_keep_mask(n, frames, h, w, spatial)
    placed = anchoring.place_anchors(n, frames, anchors.float())
    init = anchoring.blend(samples, placed.to(samples.dtype), keep)
    return AnchorPlan(placed, keep, init)


def check_overlap(overlap: int, previous_frames: int, frames: int) -> None:
    """Overlap k of a continuation: 1 <= k <= previous frames and k < new frames (a new segment needs new frames)."""
    if overlap < 1:
        raise ValueError(f"overlap: {overlap}; at least 1 frame must overlap to continue the video")
    if overlap > previous_frames:
        raise ValueError(f"overlap: {overlap} frames, but the previous segment has only {previous_frames}; "
                         f"use at most {previous_frames}")
    if overlap >= frames:
        raise ValueError(f"overlap: {overlap} frames leaves no new frame in a {frames}-frame segment; use at most "
                         f"{frames - 1} or more frames")


def continuation_plan(previous: torch.Tensor, overlap: int, frames: int, fresh_concat: bool = True) -> AnchorPlan:
    """A new segment of `frames` latent frames whose first k = `overlap` frames are anchored to the last k frames of
    the previous segment's latent `previous` (STIV frame replacement used for video prediction). The free frames
    start from zeros, as SVD_img2vid_Conditioning's empty latent. With fresh_concat the concat layout is SVD's own
    (one image latent on every frame) made from the previous segment's last latent frame: the image SVD continues
    from, without a VAE decode/encode round trip."""
    if previous.ndim != 4:
        raise ValueError(f"previous: expected a video latent [frames, C, h, w], got {tuple(previous.shape)}")
    check_latent_values(previous, "previous")
    n_prev, c, h, w = previous.shape
    check_overlap(overlap, n_prev, frames)
    anchors = torch.zeros(frames, c, h, w, dtype=torch.float32)
    anchors[:overlap] = previous[n_prev - overlap:].float()
    keep = torch.zeros(frames, 1, h, w)
    keep[:overlap] = 1.0
    init = anchoring.blend(torch.zeros(frames, c, h, w, dtype=previous.dtype), anchors.to(previous.dtype), keep)
    concat = anchoring.repeat_layout(previous[-1:].float(), frames) if fresh_concat else None
    return AnchorPlan(anchors, keep, init, concat)
