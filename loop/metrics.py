"""LoopAnimate's video metrics (Sec. 4): Loop-C, FC, CLIP-I, MSE_F0 and motion, plus a per-frame plot.

Definitions (frames F_0..F_{T-1}, input image I, e(.) an image embedding, cos the cosine similarity):
  Loop-C  = cos(e(F_0), e(F_{T-1}))                       first vs last frame; higher loops better
  FC      = mean_t cos(e(F_t), e(F_{t+1}))                frame consistency
  CLIP-I  = mean_t cos(e(F_t), e(I))                      fidelity to the input image
  MSE_F0  = mean((F_0 - I)^2) on the 0..255 scale         the paper's Table 2 scale (values ~50); lower is better
  motion  = 1 - mean_t SSIM(F_t, F_{t+1})                 0 for a still video, larger for more motion
            (the paper measures motion "with SSIM" without a formula; this is the definition used here)
  seam    = mean |F_{T-1} - F_0| next to the median of mean |F_{t+1} - F_t|   what a looping player shows at the
            seam (not in the paper): about the median = seamless, ~0 = a repeated closing frame (a stutter)
e(.) is CLIP's image embedding when a CLIP vision model is given; without one it is a pixel-space embedding
(`pixel_embedding`: the frame area-downsampled to 32x32 RGB, scaled to [-1, 1]), and the metric names say so.
Frames and images are ComfyUI IMAGE tensors [B,H,W,C], float in [0, 1]. No comfy import here.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..anchor.anchoring import center_resize
from ..validation import image_batch
from ..video.ssim import ssim

PIXEL_EMBED_SIZE = 32
EMBED_BATCH = 8  # frames per embedding call (CLIP or pixel): bounds its memory


def _frame(images: torch.Tensor, i: int) -> torch.Tensor:
    """Frame i of an IMAGE batch as float32 on the CPU [H,W,C]: one frame is converted at a time, never the video."""
    return images[i].float().cpu()


def pixel_embedding(images: torch.Tensor) -> torch.Tensor:
    """Pixel-space stand-in for a CLIP embedding: [B,H,W,C] -> [B, 32*32*C], area-downsampled, scaled to [-1, 1]."""
    x = images.permute(0, 3, 1, 2).float()
    x = F.adaptive_avg_pool2d(x, (PIXEL_EMBED_SIZE, PIXEL_EMBED_SIZE))
    return (x * 2.0 - 1.0).flatten(1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [N,D] and [N,D] (or broadcastable) in float64; 1.0 for two zero vectors."""
    a = a.double()
    b = b.double()
    num = (a * b).sum(-1)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    both_zero = (a.norm(dim=-1) == 0) & (b.norm(dim=-1) == 0)
    out = num / den.clamp_min(1e-12)
    return torch.where(both_zero, torch.ones_like(out), out)


def frame_steps(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel difference of each frame to the next, [T-1] (0..1 scale), one pair at a time."""
    return torch.tensor([float((_frame(frames, i + 1) - _frame(frames, i)).abs().mean())
                         for i in range(frames.shape[0] - 1)], dtype=torch.float32)


def seam_step(frames: torch.Tensor) -> dict:
    """The step a looping player shows from the last frame back to the first, next to the median step between
    consecutive frames: ratio ~1 = the seam is as smooth as the video, >> 1 = a jump, ~0 = the last frame repeats
    the first (the player shows it twice: a stutter; drop the closing frame)."""
    seam = float((_frame(frames, -1) - _frame(frames, 0)).abs().mean())
    median = float(frame_steps(frames).median())
    ratio = seam / median if median > 0 else (0.0 if seam == 0 else float("inf"))
    if ratio < 0.2:
        verdict = "the last frame repeats the first: a looping player shows it twice (drop the closing frame)"
    elif ratio <= 1.5:
        verdict = "seamless (the seam is a step like any other)"
    else:
        verdict = "a visible jump at the seam"
    return {"seam_step": seam, "median_step": median, "seam_ratio": ratio, "seam_verdict": verdict}


def _embed_all(fn: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Embeddings [T+1, D] of the frames then the image, EMBED_BATCH frames per call (never the whole video)."""
    with torch.no_grad():
        parts = [fn(frames[i:i + EMBED_BATCH].float().cpu()) for i in range(0, frames.shape[0], EMBED_BATCH)]
        parts.append(fn(image))
    return torch.cat([p.detach().double().cpu().reshape(p.shape[0], -1) for p in parts])


def loop_metrics(frames: torch.Tensor, image: torch.Tensor,
                 embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
    """All five metrics plus per-frame curves. `embed` maps an IMAGE batch to [B,D] (e.g. CLIP); None = pixels.

    Returns a dict with loop_c, fc, clip_i, mse_f0 (0..255 scale), mse_f0_unit (0..1 scale), motion, mean_ssim,
    embedding ('clip' or 'pixel'), per-frame lists sim_to_first, sim_to_input, sim_consecutive, ssim_consecutive,
    and notes (what was adjusted, e.g. the input image resized to the frames' size).
    Memory: the frames are read one at a time (or EMBED_BATCH at a time for the embedding) and converted to float32
    on the CPU as they are read; SSIM works on one pair of frames (`ssim_pair`). So the working memory is a fixed
    multiple of one frame, whatever the video's length (about 0.2 GB at 1024x576).
    """
    frames = image_batch(frames, "frames", min_frames=2, rgb=True)  # a view: the video is never copied whole
    image = image_batch(image, "image", rgb=True)
    notes = []
    if image.shape[0] > 1:
        notes.append(f"image has {image.shape[0]} images; the first one is the input image")
    image = image[:1].float().cpu()
    t, h, w, _ = frames.shape
    if image.shape[1:3] != frames.shape[1:3]:
        notes.append(f"input image {image.shape[2]}x{image.shape[1]} resized (centre crop + bilinear) to the "
                     f"frames' {w}x{h}")
        image = center_resize(image.movedim(-1, 1), h, w).movedim(1, -1).clamp(0, 1)
    kind = "pixel" if embed is None else "clip"
    emb = _embed_all(embed if embed is not None else pixel_embedding, frames, image)
    if emb.shape[0] != t + 1:
        raise ValueError(f"the embedding gave {emb.shape[0]} rows for {t + 1} images (frames + input image)")
    fe, ie = emb[:t], emb[t:]
    sim_first = cosine(fe, fe[:1])
    sim_input = cosine(fe, ie)
    sim_consec = cosine(fe[:-1], fe[1:])
    ssim_consec = ssim(frames[:-1], frames[1:])
    mse_unit = float(((_frame(frames, 0) - image[0]) ** 2).mean())
    return {
        "embedding": kind,
        "loop_c": float(sim_first[-1]),                 # LoopAnimate Loop-C
        "fc": float(sim_consec.mean()),                 # Frame Consistency
        "clip_i": float(sim_input.mean()),              # CLIP-I
        "mse_f0": mse_unit * 255.0 ** 2,                # MSE_F0, 0..255 scale as the paper's Table 2
        "mse_f0_unit": mse_unit,
        "mean_ssim": float(ssim_consec.mean()),
        "motion": 1.0 - float(ssim_consec.mean()),
        "frames": t,
        "sim_to_first": sim_first.tolist(),
        "sim_to_input": sim_input.tolist(),
        "sim_consecutive": sim_consec.tolist(),
        "ssim_consecutive": ssim_consec.tolist(),
        "notes": notes,
        **seam_step(frames),
    }


def format_metrics(m: dict) -> str:
    """Plain-text report of `loop_metrics`' numbers, with the embedding the cosine metrics used."""
    tag = "CLIP" if m["embedding"] == "clip" else "pixel-space (32x32 RGB; no CLIP_VISION given)"
    lines = [
        f"frames: {m['frames']}",
        f"embedding: {tag}",
        f"Loop-C ({m['embedding']}): {m['loop_c']:.4f}   (cos first vs last frame; higher = better loop)",
        f"FC ({m['embedding']}): {m['fc']:.4f}   (mean cos of consecutive frames)",
        f"CLIP-I ({m['embedding']}): {m['clip_i']:.4f}   (mean cos of frames to the input image)",
        f"MSE_F0: {m['mse_f0']:.2f}   (first frame vs input image, 0..255 scale; {m['mse_f0_unit']:.6f} on 0..1)",
        f"motion: {m['motion']:.4f}   (1 - mean SSIM of consecutive frames; mean SSIM {m['mean_ssim']:.4f})",
        f"seam step (last -> first): {m['seam_step']:.4f} vs median consecutive step {m['median_step']:.4f} "
        f"({m['seam_ratio']:.2f}x): {m['seam_verdict']}",
    ]
    lines += [f"note: {n}" for n in m["notes"]]
    return "\n".join(lines)


def render_plot(m: dict, width: int = 768, height: int = 384) -> np.ndarray:
    """Per-frame curves drawn with OpenCV -> float RGB [height, width, 3] in [0, 1].

    Curves: cos to the first frame (the loop closes where it returns to 1), cos to the input image, SSIM to the
    previous frame. The y axis spans [min(values, 0.5), 1].
    """
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, 16, 34, 58  # bottom: tick labels, axis label, summary line
    pw, ph = width - left - right, height - top - bottom
    series = [
        ("cos to first frame", m["sim_to_first"], (31, 119, 180), 0),
        ("cos to input image", m["sim_to_input"], (214, 39, 40), 0),
        ("SSIM to previous frame", m["ssim_consecutive"], (44, 160, 44), 1),
    ]
    vals = [v for _, s, _, _ in series for v in s if math.isfinite(v)]
    y_lo = min(0.5, min(vals) if vals else 0.5)
    y_lo = math.floor(y_lo * 10) / 10.0
    y_hi = 1.0
    n = max(m["frames"], 2)

    def px(i, v):
        x = left + pw * i / (n - 1)
        y = top + ph * (y_hi - v) / max(y_hi - y_lo, 1e-6)
        return int(round(x)), int(round(min(max(y, top), top + ph)))

    grid = (225, 225, 225)
    for k in range(6):
        v = y_lo + (y_hi - y_lo) * k / 5
        _, y = px(0, v)
        cv2.line(img, (left, y), (left + pw, y), grid, 1)
        cv2.putText(img, f"{v:.2f}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    step = max(1, (n - 1) // 12)
    for i in range(0, n, step):
        x, _ = px(i, y_lo)
        cv2.line(img, (x, top + ph), (x, top + ph + 4), (60, 60, 60), 1)
        cv2.putText(img, str(i), (x - 6, top + ph + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (60, 60, 60), 1)
    cv2.putText(img, "frame", (left + pw // 2 - 20, top + ph + 34), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1,
                cv2.LINE_AA)
    for _name, s, color, offset in series:
        pts = [px(i + offset, v) for i, v in enumerate(s) if math.isfinite(v)]
        if len(pts) >= 2:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
    x = left
    for name, _, color, _ in series:
        cv2.line(img, (x, 16), (x + 18, 16), color, 3)
        cv2.putText(img, name, (x + 22, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
        x += 30 + 7 * len(name)
    title = f"Loop-C {m['loop_c']:.3f}  FC {m['fc']:.3f}  motion {m['motion']:.3f} ({m['embedding']})"
    cv2.putText(img, title, (width - 8 - 7 * len(title), height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (30, 30, 30), 1,
                cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


__all__ = ["pixel_embedding", "cosine", "frame_steps", "seam_step",
           "loop_metrics", "format_metrics", "render_plot"]
