"""Video Compare's core: how far a candidate video (e.g. an accelerated run) is from a reference (the exact run).

Definitions (reference frames r_0..r_{T-1}, candidate frames c_0..c_{T-1}, ComfyUI IMAGE values on the 0..1 scale as
given: float, no 8-bit rounding; alpha is dropped and a one-channel image is repeated to RGB):
  MSE_t   = mean over pixels and channels of (c_t - r_t)^2, in float64
  PSNR_t  = 10 log10(1 / MSE_t) dB (data range 1); inf when c_t equals r_t exactly
  PSNR    = 10 log10(1 / mean_t MSE_t), the whole video's ("mean PSNR"; ffmpeg's psnr filter averages the same way):
            finite unless every frame is identical, so one exactly equal (e.g. anchored) frame does not make it inf
  SSIM_t  = mean SSIM of c_t and r_t (Wang et al. 2004, Gaussian 11x11, sigma 1.5: video/ssim.ssim_pair, float32,
            one frame pair at a time); SSIM = mean_t SSIM_t
  temporal difference (flicker that PSNR misses: a candidate can be close frame by frame yet change differently from
  one frame to the next):
    D_t  = mean |(c_{t+1} - c_t) - (r_{t+1} - r_t)|   per transition t -> t+1 (= mean |e_{t+1} - e_t|, e = c - r)
    M    = mean_t mean |r_{t+1} - r_t|                 the reference's own mean frame-to-frame change
    TD_t = 100 D_t / M (%),  TD = mean_t TD_t
  0% = the candidate changes from frame to frame exactly as the reference does; 100% = its changes differ by as much
  as the reference moves. A still reference (M = 0) gives 0% when the candidate is still too, else inf. A one-frame
  video has no transition: TD is None ("n/a"), while PSNR and SSIM are defined.
Frames are indexed from 0, as in the IMAGE batch. Memory: one frame pair at a time (SSIM about 20 float32 copies of
one frame: ~0.14 GB at 1024x576), plus the preview the caller asks for.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import cv2
import numpy as np
import torch

from ..validation import image_batch, same_size
from .ssim import ssim_pair

PREVIEW_PANEL = 512  # long side of each preview panel (reference, candidate, difference), in pixels
PREVIEW_MIN_PANEL = 128  # smaller frames are enlarged (nearest) to this long side, so the labels fit
HEADER = 20  # height of the label strip above the preview panels


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Per-frame numbers of one comparison (see the module's definitions)."""
    frames: int
    height: int
    width: int
    mse: list[float]
    psnr: list[float]
    ssim: list[float]
    temporal: list[float]  # TD_t for t -> t+1, frames - 1 values, %
    reference_motion: float  # M
    difference_p99: list[float]  # 99th percentile of |c_t - r_t| (channel mean) per frame: the preview's scale
    notes: list[str]

    @property
    def identical(self) -> bool:
        return all(m == 0.0 for m in self.mse)

    @property
    def video_psnr(self) -> float:
        return _psnr(sum(self.mse) / self.frames)

    @property
    def mean_ssim(self) -> float:
        return sum(self.ssim) / self.frames

    @property
    def temporal_difference(self) -> float | None:
        return sum(self.temporal) / len(self.temporal) if self.temporal else None

    @property
    def worst_frame(self) -> int:
        """The frame of lowest PSNR (the first of equals)."""
        return min(range(self.frames), key=lambda t: (self.psnr[t], t))


def _psnr(mse: float) -> float:
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def check_videos(reference: torch.Tensor, candidate: torch.Tensor, names: tuple[str, str] = ("reference", "candidate")
                 ) -> list[str]:
    """Raise SettingError naming the input unless both are IMAGE batches (validation.image_batch) of one frame count
    and size; returns notes on what the comparison ignores (alpha)."""
    for images, name in zip((reference, candidate), names, strict=True):
        image_batch(images, name)
    same_size(reference, candidate, names,
              advice="compare videos of one frame count and one size (trim or resize one)")
    return [f"{name}'s alpha channel ignored (RGB compared)" for images, name in
            zip((reference, candidate), names, strict=True) if images.shape[-1] == 4]


def _percentile_99(values: torch.Tensor) -> float:
    """The 99th percentile (nearest rank) of a tensor's values; kthvalue has no size limit, unlike quantile."""
    flat = values.flatten()
    return float(flat.kthvalue(max(1, math.ceil(0.99 * flat.numel()))).values)


def _rgb_frame(images: torch.Tensor, t: int) -> torch.Tensor:
    """Frame t as float64 RGB [H, W, 3] on the CPU (alpha dropped, one channel repeated)."""
    frame = images[t].to("cpu", torch.float64)
    return frame[..., :3] if frame.shape[-1] >= 3 else frame.expand(-1, -1, 3)


def compare_videos(reference: torch.Tensor, candidate: torch.Tensor,
                   progress: Callable[[int, int], None] | None = None,
                   names: tuple[str, str] = ("reference", "candidate")) -> Comparison:
    """Per-frame PSNR, SSIM and temporal difference of `candidate` against `reference` (module docstring); one frame
    pair at a time. `progress(done, total)` is called after each frame."""
    notes = check_videos(reference, candidate, names)
    frames, height, width = reference.shape[:3]
    mse, psnr, ssim, p99, changes, motion = [], [], [], [], [], []
    previous_r = previous_e = None
    for t in range(frames):
        r, c = _rgb_frame(reference, t), _rgb_frame(candidate, t)
        e = c - r
        m = float((e * e).mean())
        mse.append(m)
        psnr.append(_psnr(m))
        ssim.append(1.0 if m == 0.0 else ssim_pair(r.float(), c.float()))
        p99.append(_percentile_99(e.abs().mean(-1)) if m else 0.0)
        if previous_r is not None:
            changes.append(float((e - previous_e).abs().mean()))
            motion.append(float((r - previous_r).abs().mean()))
        previous_r, previous_e = r, e
        if progress is not None:
            progress(t + 1, frames)
    reference_motion = sum(motion) / len(motion) if motion else 0.0
    if reference_motion > 0:
        temporal = [100.0 * d / reference_motion for d in changes]
    else:  # a still reference: any change of the candidate is infinitely more than the reference's
        temporal = [0.0 if d == 0.0 else math.inf for d in changes]
    return Comparison(frames, height, width, mse, psnr, ssim, temporal, reference_motion, p99, notes)


def _percent(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.2g}%" if value < 1 else f"{value:.1f}%"


def _ssim_text(value: float) -> str:
    return f"{value:.4f}" if value > 0.999 else f"{value:.3f}"


def summary(comparison: Comparison, reference_label: str = "reference", candidate_label: str = "candidate") -> str:
    """One line: 'candidate vs reference: mean PSNR 34.1 dB, min 29.8 at frame 17, SSIM 0.962, temporal difference
    0.8%', or 'identical' for exactly equal videos, with what was ignored or not defined."""
    return f"{candidate_label} vs {reference_label}: {_numbers(comparison)}"


def _numbers(k: Comparison) -> str:
    td = k.temporal_difference
    if k.identical:
        text = f"identical ({k.frames} frame{'s' if k.frames != 1 else ''}): PSNR inf, SSIM 1"
        text += ", temporal difference 0%" if td is not None else ", temporal difference n/a (one frame)"
    else:
        worst = k.worst_frame
        text = (f"mean PSNR {k.video_psnr:.1f} dB, min {k.psnr[worst]:.1f} at frame {worst}, "
                f"SSIM {_ssim_text(k.mean_ssim)}, ")
        if td is None:
            text += "temporal difference n/a (one frame)"
        elif math.isinf(td):
            text += "temporal difference inf (the reference is still, the candidate changes)"
        else:
            text += f"temporal difference {_percent(td)}"
        same = sum(m == 0.0 for m in k.mse)
        if same:
            text += f"; {same} of {k.frames} frames identical"
    return text + "".join(f"; {n}" for n in k.notes)


def per_frame_table(comparison: Comparison) -> str:
    """CSV, one row per frame: frame, psnr_db, ssim, temporal_difference_pct (from the previous frame; empty for
    frame 0). PSNR of an identical frame is 'inf'."""
    rows = ["frame,psnr_db,ssim,temporal_difference_pct"]
    for t in range(comparison.frames):
        td = "" if t == 0 else f"{comparison.temporal[t - 1]:.4f}"
        rows.append(f"{t},{comparison.psnr[t]:.4f},{comparison.ssim[t]:.6f},{td}")
    return "\n".join(rows)


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.encode("ascii", "replace").decode("ascii")


def _panel_size(height: int, width: int) -> tuple[int, int]:
    long = max(height, width)
    target = min(long, PREVIEW_PANEL) if long >= PREVIEW_MIN_PANEL else PREVIEW_MIN_PANEL
    return max(1, round(height * target / long)), max(1, round(width * target / long))


def _to_panel(frame: torch.Tensor, height: int, width: int) -> np.ndarray:
    """[H, W, 3] float (0..1) -> uint8 [height, width, 3]: area-downscaled, or enlarged by nearest neighbour."""
    img = np.clip(frame.numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)
    smaller = height <= img.shape[0]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_NEAREST)


def preview_gain(comparison: Comparison) -> float:
    """The difference panel's brightness gain: the video's largest 99th-percentile |c - r| shows as white (so one
    scale for all frames), between 1x and 1000x."""
    top = max(comparison.difference_p99)
    return 1.0 if top <= 0 else min(max(1.0 / top, 1.0), 1000.0)


def preview(reference: torch.Tensor, candidate: torch.Tensor, comparison: Comparison,
            reference_label: str = "reference", candidate_label: str = "candidate") -> torch.Tensor:
    """Side by side per frame: reference | candidate | |candidate - reference| (channel mean, times preview_gain,
    inferno colours), each panel at most PREVIEW_PANEL px on its long side, under a label strip.
    Returns an IMAGE batch [T, HEADER + h, 3w, 3] (float32)."""
    h, w = _panel_size(comparison.height, comparison.width)
    gain = preview_gain(comparison)
    titles = [reference_label, candidate_label,
              "no difference" if comparison.identical else f"|difference| x{gain:.3g}"]
    header = np.full((HEADER, 3 * w, 3), 32, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, _ascii(title)[:max(1, w // 8)], (i * w + 4, HEADER - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (235, 235, 235), 1, cv2.LINE_AA)
    out = np.empty((comparison.frames, HEADER + h, 3 * w, 3), np.uint8)
    for t in range(comparison.frames):
        r, c = _rgb_frame(reference, t), _rgb_frame(candidate, t)
        diff = ((c - r).abs().mean(-1) * gain).clamp(0, 1)
        heat = cv2.applyColorMap(_to_panel(diff[..., None].expand(-1, -1, 3), h, w)[..., 0], cv2.COLORMAP_INFERNO)
        out[t, :HEADER] = header
        out[t, HEADER:] = np.concatenate([_to_panel(r, h, w), _to_panel(c, h, w), heat[..., ::-1]], axis=1)
    return torch.from_numpy(out).float() / 255.0


def render_plot(comparison: Comparison, reference_label: str = "reference", candidate_label: str = "candidate",
                width: int = 768) -> np.ndarray:
    """Per-frame curves drawn with OpenCV -> float RGB [H, width, 3] in [0, 1]: PSNR (dB; an identical frame's inf
    is drawn as a hollow marker on the top edge), SSIM, and the temporal difference of each transition (at the frame
    it arrives at), in three stacked panels sharing the frame axis, the summary line below."""
    k = comparison
    finite = [p for p in k.psnr if math.isfinite(p)]
    p_lo = math.floor(min(finite)) - 1 if finite else 0.0
    p_hi = math.ceil(max(finite)) + 1 if finite else 1.0
    s_lo = min(0.9, math.floor(min(k.ssim) * 20) / 20.0)
    tds = [v for v in k.temporal if math.isfinite(v)]
    t_hi = max(1.0, max(tds) * 1.1) if tds else 1.0
    panels = [
        ("PSNR (dB)", list(enumerate(k.psnr)), (p_lo, p_hi), (31, 119, 180), "{:.3g}"),
        ("SSIM", list(enumerate(k.ssim)), (s_lo, 1.0), (44, 160, 44), "{:.2f}"),
        ("temporal difference (%)", [(t + 1, v) for t, v in enumerate(k.temporal)], (0.0, t_hi), (214, 39, 40),
         "{:.3g}"),
    ]
    left, right, panel_h, gap, top, bottom = 56, 16, 120, 28, 46, 46
    height = top + len(panels) * panel_h + (len(panels) - 1) * gap + bottom
    img = np.full((height, width, 3), 255, np.uint8)
    pw, n = width - left - right, max(k.frames, 2)

    def x_of(i: float) -> int:
        return int(round(left + pw * i / (n - 1)))

    ink, grid = (60, 60, 60), (225, 225, 225)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = _ascii(f"{candidate_label} vs {reference_label}, per frame")
    cv2.putText(img, title, (left, 18), font, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    for row, (name, points, (lo, hi), color, tick) in enumerate(panels):
        y0 = top + row * (panel_h + gap)

        def px(i: float, v: float, y0: int = y0, lo: float = lo, hi: float = hi) -> tuple[int, int]:
            y = y0 + panel_h * (hi - v) / max(hi - lo, 1e-9)
            return x_of(i), int(round(min(max(y, y0), y0 + panel_h)))

        for j in range(3):
            v = lo + (hi - lo) * j / 2
            y = px(0, v)[1]
            cv2.line(img, (left, y), (left + pw, y), grid, 1)
            cv2.putText(img, tick.format(v), (4, y + 4), font, 0.38, ink, 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, y0), (left + pw, y0 + panel_h), ink, 1)
        cv2.putText(img, name, (left, y0 - 7), font, 0.45, color, 1, cv2.LINE_AA)
        drawn = [(i, v) for i, v in points if math.isfinite(v)]
        pts = [px(i, v) for i, v in drawn]
        if len(pts) >= 2:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        for i, v in points:
            if math.isinf(v):  # an identical frame's PSNR, or a still reference's temporal difference
                cv2.circle(img, px(i, hi), 4, color, 1, cv2.LINE_AA)
        if not points:
            cv2.putText(img, "n/a (one frame)", (left + pw // 2 - 50, y0 + panel_h // 2), font, 0.45, ink, 1,
                        cv2.LINE_AA)
    axis_y = top + len(panels) * panel_h + (len(panels) - 1) * gap
    step = max(1, (n - 1) // 12)
    for i in range(0, k.frames, step):
        x = x_of(i)
        cv2.line(img, (x, axis_y), (x, axis_y + 4), ink, 1)
        cv2.putText(img, str(i), (x - 6, axis_y + 17), font, 0.38, ink, 1, cv2.LINE_AA)
    line = _ascii(_numbers(k))
    scale = min(0.42, 0.42 * (width - 16) / max(1, 8 * len(line)))
    cv2.putText(img, line, (8, height - 8), font, scale, (30, 30, 30), 1, cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


__all__ = ["Comparison", "check_videos", "compare_videos", "summary", "per_frame_table", "preview", "preview_gain",
           "render_plot"]
