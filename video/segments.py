"""Joining decoded video segments that overlap (no ComfyUI import): Join Video Segments' core.

Segments made by Video Extend overlap by k frames: the first k frames of segment i+1 are the last k frames of
segment i. The join keeps every overlap once -- from the earlier segment, or cross-faded between both -- so the
joined video has sum(lengths) - k * (segments - 1) frames, none duplicated, none skipped.

Colour matching is Reinhard et al.'s colour transfer ("Color Transfer between Images", IEEE CG&A 2001): per-channel
mean and standard deviation in a perceptual colour space (CIELAB here, OpenCV's float conversion, instead of the
paper's l-alpha-beta), x' = (x - mean_src) / std_src * std_ref + mean_ref, applied to all frames of a segment.
Two references (COLOUR_MATCH):
- "overlap": segment i's overlap frames are mapped onto the same frames of segment i-1 (already matched), so every
  segment is matched through the chain of overlaps to the first segment. Both sides show the same content, so only
  the colour differs: a cast a segment picked up is removed almost entirely. Needs overlap >= 1.
- "anchor frame": segment i's first frame is mapped onto the first segment's anchor frame (its first frame, the
  input image): also pulls back colour drift inside the first segment, but content that really changes between
  the two frames is pulled towards the anchor too (the method's limit), so it removes a cast less completely.

Frames are ComfyUI IMAGE tensors [T, H, W, C], float in 0..1.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def check_segments(lengths: list[int], overlap: int, names: list[str]) -> None:
    """At least two segments; 0 <= overlap < every segment's length (each segment adds a frame of its own)."""
    if len(lengths) < 2:
        raise ValueError(f"{names[0] if names else 'segments'}: give at least two segments to join (a single "
                         f"segment needs no joining)")
    if overlap < 0:
        raise ValueError(f"overlap: {overlap}; give 0 (plain concatenation) or the frames the segments share")
    for name, n in zip(names, lengths, strict=True):
        if overlap >= n:
            raise ValueError(f"{name}: {n} frame(s) but the overlap is {overlap}; every segment needs more frames "
                             f"than the overlap (or lower overlap)")


def joined_length(lengths: list[int], overlap: int) -> int:
    return sum(lengths) - overlap * (len(lengths) - 1)


def joint_positions(lengths: list[int], overlap: int) -> list[int]:
    """Index in the joined video of the first frame that segment i (i >= 1) adds after its overlap."""
    positions, end = [], lengths[0]
    for n in lengths[1:]:
        positions.append(end)
        end += n - overlap
    return positions


def _lab(frames: torch.Tensor) -> np.ndarray:
    rgb = np.ascontiguousarray(frames[..., :3].clamp(0, 1).cpu().numpy().astype(np.float32))
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in rgb])


def _rgb(lab: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_LAB2RGB) for f in lab])


COLOUR_MATCH = ("off", "overlap", "anchor frame")


def lab_statistics(frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation in CIELAB over all pixels of frames [T, H, W, C]."""
    lab = _lab(frames).reshape(-1, 3).astype(np.float64)
    return lab.mean(0), lab.std(0)


def colour_transfer(frames: torch.Tensor, source: tuple[np.ndarray, np.ndarray],
                    reference: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """Reinhard et al. 2001 in CIELAB: map the `source` statistics (mean, std) onto the `reference` ones, on every
    frame of `frames`. A channel with no spread in the source is only shifted."""
    (mu_s, sd_s), (mu_r, sd_r) = source, reference
    scale = np.where(sd_s > 1e-6, sd_r / np.maximum(sd_s, 1e-6), 1.0)
    lab = _lab(frames).astype(np.float64)
    lab = (lab - mu_s) * scale + mu_r
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    rgb = np.clip(_rgb(lab.astype(np.float32)), 0.0, 1.0)
    out = torch.from_numpy(rgb).to(frames.dtype)
    if frames.shape[-1] == 4:  # keep an alpha channel as it is
        out = torch.cat([out, frames[..., 3:].cpu()], -1)
    return out


def match_colours(segments: list[torch.Tensor], overlap: int, reference: str) -> list[torch.Tensor]:
    """Every segment after the first colour-matched (Reinhard et al. 2001 in CIELAB) as COLOUR_MATCH describes."""
    if reference not in COLOUR_MATCH:
        raise ValueError(f"colour_match must be one of {COLOUR_MATCH}, got '{reference}'")
    if reference == "off":
        return list(segments)
    if reference == "overlap" and overlap < 1:
        raise ValueError("colour_match: 'overlap' matches the frames segments share, but overlap is 0; use "
                         "'anchor frame' or set the overlap")
    out = [segments[0]]
    anchor = lab_statistics(segments[0][:1])
    for seg in segments[1:]:
        if reference == "overlap":
            out.append(colour_transfer(seg, lab_statistics(seg[:overlap]), lab_statistics(out[-1][-overlap:])))
        else:
            out.append(colour_transfer(seg, lab_statistics(seg[:1]), anchor))
    return out


def join_segments(segments: list[torch.Tensor], overlap: int, colour_match: str = "off",
                  crossfade: bool = False) -> torch.Tensor:
    """One IMAGE batch from overlapping segments (same size, same channels). Without cross-fade each overlap is
    taken from the earlier segment; with it, overlap frame j of k is lerp(earlier, later, (j + 1) / (k + 1))."""
    check_segments([s.shape[0] for s in segments], overlap, [f"segment_{i + 1}" for i in range(len(segments))])
    segments = match_colours(segments, overlap, colour_match)
    out = segments[0]
    for seg in segments[1:]:
        seg = seg.to(out.dtype)
        if crossfade and overlap > 0:
            weights = torch.arange(1, overlap + 1, dtype=out.dtype) / (overlap + 1)
            blended = torch.lerp(out[-overlap:], seg[:overlap], weights.reshape(-1, 1, 1, 1))
            out = torch.cat([out[:-overlap], blended, seg[overlap:]])
        else:
            out = torch.cat([out, seg[overlap:]])
    return out


def seam_report(video: torch.Tensor, lengths: list[int], overlap: int) -> tuple[list[dict], str]:
    """Per joint: the frame-to-frame step (mean |difference|, 0..1) across the joint, next to the median step
    inside the segments. A ratio near 1 = the joint is as smooth as the video; >> 1 = a visible jump."""
    steps = (video[1:].float() - video[:-1].float()).abs().flatten(1).mean(1)
    joints = joint_positions(lengths, overlap)
    inside = torch.ones(steps.shape[0], dtype=torch.bool)
    for p in joints:
        inside[p - 1] = False  # the step from frame p-1 to p crosses the joint
    median = float(steps[inside].median()) if bool(inside.any()) else float("nan")
    summary = (f"joined {len(lengths)} segments ({', '.join(map(str, lengths))} frames, overlap {overlap}) "
               f"-> {video.shape[0]} frames; median step inside segments {median:.4f}")
    rows, lines = [], [summary]
    for i, p in enumerate(joints, start=1):
        step = float(steps[p - 1])
        ratio = step / median if median > 0 else float("inf")
        rows.append({"joint": i, "frame": p, "step": step, "ratio": ratio})
        lines.append(f"joint {i} (frames {p - 1} -> {p}): step {step:.4f} = {ratio:.2f}x the median")
    return rows, "\n".join(lines)
