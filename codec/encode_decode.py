"""Encode a video into first frame + per-block motion vectors + residuals, and decode it back bit-exactly.

Decouple-content-motion, Sec. "Efficient Decoupled Video Diffusion Model" (ED-VDM): m_i = argmin SAD over a search
window, r = frame - motion-compensated prediction; decode = warp(previous reconstruction, m) + r. Frames are handled
pair by pair (memory bounded by one pair plus the outputs). All arithmetic is integer, so decode(encode(v)) == v
exactly, in both precisions (codec.types):
- uint8 frames: int16 residuals in [-255, 255].
- float32 frames: the vectors are searched on the 8-bit quantised frames round(x * 255) (the same vectors as for
  an 8-bit copy of the video); the prediction is the warp of the previous float32 frame (a pure copy of bit
  patterns); the residual is the int32 difference of the float32 bit patterns modulo 2^32 (types.bits_difference),
  so decode is bit-exact for every float32 value (denormals, -0.0, negatives, NaN payloads alike).
On a CUDA device (or backend="torch") the search runs in torch and is the exhaustive one; on the CPU it runs on
OpenCV/numpy ("fast": hierarchical + predictors, "exhaustive": full search), which is ~100x faster there than the
same ops in torch. Float32 residuals and float32 decoding always run on the CPU (a copy and an integer add).
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch

from ..validation import SettingError
from . import blockmatch, torch_ops
from .types import BLOCK_SIZES, MotionVectors, bits_add, bits_difference, frame_precision, image_to_uint8

SEARCH_METHODS = ("fast", "exhaustive")


def validate_frames(frames: torch.Tensor, name: str = "frames") -> None:
    """uint8 or float32 [T >= 2, H, W, C in (1, 3)]."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        raise ValueError(f"{name} must be a [frames, height, width, channels] tensor")
    if frames.dtype not in (torch.uint8, torch.float32):
        raise ValueError(f"{name} must be uint8 (8-bit) or float32, got {frames.dtype} (codec.codec_frames gives "
                         "the right one for an IMAGE)")
    if frames.shape[0] < 2:
        raise ValueError(f"{name} has {frames.shape[0]} frame(s); motion needs at least 2 frames")
    if frames.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {frames.shape[-1]}")


def check_params(height: int, width: int, block_size: int, search_range: int, method: str) -> None:
    """The search's settings for frames of height x width; SettingError naming the setting (`frames` when no block
    size fits the frames: then the frames, not a setting, are what must change)."""
    sizes = ", ".join(map(str, BLOCK_SIZES))
    if min(height, width) < min(BLOCK_SIZES):
        larger = f" ({block_size}x{block_size} for block_size {block_size})" if block_size > min(BLOCK_SIZES) else ""
        raise SettingError("frames", f"frames: the frames are too small ({width}x{height}): every block size "
                                     f"({sizes}) needs frames at least that many pixels on each side, so the frames "
                                     f"must be at least {min(BLOCK_SIZES)}x{min(BLOCK_SIZES)} pixels{larger}; resize "
                                     f"or pad them")
    if block_size not in BLOCK_SIZES:
        raise SettingError("block_size", f"block_size must be one of {BLOCK_SIZES}, got {block_size}")
    if block_size > min(height, width):
        fitting = [str(b) for b in BLOCK_SIZES if b <= min(height, width)]
        raise SettingError("block_size", f"block_size {block_size} is larger than the frame ({width}x{height}): "
                                         f"choose {' or '.join(fitting)} (block_size is one of {sizes} and must fit "
                                         f"inside the frame), or give frames at least {block_size}x{block_size} "
                                         f"pixels")
    if not 1 <= search_range <= 64:
        raise SettingError("search_range", f"search_range must be 1..64 pixels, got {search_range}")
    if method not in SEARCH_METHODS:
        raise SettingError("method", f"method must be one of {SEARCH_METHODS}, got {method!r}")


def search(cur: torch.Tensor, ref: torch.Tensor, block_size: int, search_range: int, method: str = "fast",
           predictors: np.ndarray | None = None) -> torch.Tensor:
    """Vectors int32 [Hb, Wb, 2] for frame `cur` against reconstruction `ref` (both uint8 [H, W, C])."""
    if cur.device.type != "cpu":
        return torch_ops.exhaustive_search(torch_ops.luma(cur), torch_ops.luma(ref), block_size, search_range)
    return torch.from_numpy(_search_np(cur.numpy(), ref.numpy(), block_size, search_range, method, predictors))


def _search_np(cur: np.ndarray, ref: np.ndarray, block_size: int, search_range: int, method: str,
               predictors: np.ndarray | None) -> np.ndarray:
    cur_y, ref_y = blockmatch.luma_u8(cur), blockmatch.luma_u8(ref)
    if method == "exhaustive":
        return blockmatch.exhaustive_search(cur_y, ref_y, block_size, search_range)
    return blockmatch.fast_search(cur_y, ref_y, block_size, search_range, predictors)


def predict(ref: torch.Tensor, vectors: torch.Tensor, block_size: int) -> torch.Tensor:
    """Motion-compensated prediction ([H, W, C], uint8 or float32 as `ref`) of the next frame from reconstruction
    `ref`: an exact copy of pixels."""
    if ref.device.type != "cpu":
        return torch_ops.warp(ref, vectors, block_size)
    return torch.from_numpy(blockmatch.warp(ref.numpy(), vectors.numpy(), block_size))


def _use_torch(device: torch.device, backend: str) -> bool:
    """backend "auto": torch on GPUs, OpenCV/numpy on the CPU; "torch" forces the torch path (also on the CPU)."""
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend must be 'auto' or 'torch', got {backend!r}")
    return backend == "torch" or device.type != "cpu"


PREDICTOR_LAG = 2  # temporal predictor: the vectors of two pairs back, so pairs can be searched two at a time


def _encode_pair_np(cur: np.ndarray, ref: np.ndarray, block_size: int, search_range: int, method: str,
                    predictors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, residual int16, reconstruction uint8) of frame `cur` against reconstruction `ref` (numpy)."""
    vec = _search_np(cur, ref, block_size, search_range, method, predictors)
    pred = blockmatch.warp(ref, vec, block_size)
    residual = _to_hwc(cv2.subtract(cur, pred, dtype=cv2.CV_16S), cur.shape)
    recon = _to_hwc(cv2.add(pred, residual, dtype=cv2.CV_8U), cur.shape)
    return vec, residual, recon


def encode_pairs(frames: Iterable[torch.Tensor], block_size: int = 16, search_range: int = 16,
                 method: str = "fast", backend: str = "auto") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (vectors int16 [Hb, Wb, 2], residual int16 [H, W, C]) for each frame after the first.

    Works frame pair by frame pair: only the previous reconstruction (and two vector fields) are kept. The
    reconstruction is prediction + residual, which (lossless residuals) equals the frame itself; it is formed
    explicitly so the encoder and decoder share one reference. CPU tensors go through OpenCV/numpy (integer ops
    there are ~10x faster than torch's on this CPU), other devices through torch.
    """
    recon, history = None, []
    for frame in frames:
        if recon is None:
            recon = frame.contiguous()
            continue
        if frame.shape != recon.shape:
            raise ValueError(f"mixed frame sizes: got a {tuple(frame.shape)} frame after {tuple(recon.shape)} "
                             f"frames; all frames of a video must have one size")
        if not _use_torch(frame.device, backend):
            predictors = history[-PREDICTOR_LAG] if len(history) >= PREDICTOR_LAG else None
            vec, residual, rec = _encode_pair_np(frame.contiguous().numpy(), recon.numpy(), block_size,
                                                 search_range, method, predictors)
            history = (history + [vec])[-PREDICTOR_LAG:]
            recon, vec_t, res_t = torch.from_numpy(rec), torch.from_numpy(vec), torch.from_numpy(residual)
        else:
            vec_t = torch_ops.exhaustive_search(torch_ops.luma(frame), torch_ops.luma(recon), block_size,
                                                search_range)
            pred = torch_ops.warp(recon, vec_t, block_size).to(torch.int16)
            res_t = frame.to(torch.int16) - pred
            recon = (pred + res_t).to(torch.uint8)
        yield vec_t.to(torch.int16).cpu(), res_t


def _to_hwc(img: np.ndarray, shape: tuple) -> np.ndarray:
    """OpenCV drops a trailing channel axis of size 1; put it back."""
    return img.reshape(shape)


def encode(frames: torch.Tensor, block_size: int = 16, search_range: int = 16, method: str = "fast",
           device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
           backend: str = "auto", threads: int = 2) -> tuple[MotionVectors, torch.Tensor]:
    """Encode frames [T, H, W, C] -> (MotionVectors, residuals [T-1, H, W, C] on the CPU): uint8 frames give int16
    residuals, float32 frames int32 bit differences (precision "float32", vectors searched on round(x * 255)).

    On the CPU path with threads=2, two frame pairs are searched at once (OpenCV releases the GIL). Because the
    residuals are lossless, the reconstruction of frame t-1 IS frame t-1, so pair t does not have to wait for pair
    t-1; with the temporal predictor taken from two pairs back the result is identical to ``encode_pairs``.
    """
    validate_frames(frames)
    if frames.dtype == torch.float32:
        motion, _ = _encode_u8(image_to_uint8(frames), block_size, search_range, method, device, progress,
                               backend, threads, keep_residual=False)
        motion = dataclasses.replace(motion, precision="float32")
        return motion, residuals_for(frames, motion)
    return _encode_u8(frames, block_size, search_range, method, device, progress, backend, threads)


def _encode_u8(frames: torch.Tensor, block_size: int, search_range: int, method: str, device: str | torch.device,
               progress: Callable[[int, int], None] | None, backend: str, threads: int,
               keep_residual: bool = True) -> tuple[MotionVectors, torch.Tensor | None]:
    """``encode`` of uint8 frames; keep_residual=False: the vectors only (residual None)."""
    t, h, w, _ = frames.shape
    check_params(h, w, block_size, search_range, method)
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2, got {threads}")
    device = torch.device(device)
    vectors = [None] * (t - 1)
    # numpy: copies here are ~10x cheaper than torch's
    residuals = np.empty((t - 1, *frames.shape[1:]), np.int16) if keep_residual else None
    source = "search:exhaustive" if _use_torch(device, backend) else f"search:{method}"
    if _use_torch(device, backend) or threads == 1:
        stream = (frames[i].to(device) for i in range(t))
        for i, (vec, res) in enumerate(encode_pairs(stream, block_size, search_range, method, backend)):
            vectors[i] = vec
            if keep_residual:
                residuals[i] = res.cpu().numpy()
            if progress:
                progress(i + 1, t - 1)
    else:
        video = frames.contiguous().numpy()

        def job(k: int):
            predictors = vectors[k - PREDICTOR_LAG].numpy() if k >= PREDICTOR_LAG else None
            vec = _search_np(video[k + 1], video[k], block_size, search_range, method, predictors)
            if keep_residual:
                pred = blockmatch.warp(video[k], vec, block_size)
                # lossless residual, written in place; the reconstruction (= the frame itself) is not needed here
                cv2.subtract(video[k + 1], pred, dst=residuals[k], dtype=cv2.CV_16S)
            return torch.from_numpy(vec).to(torch.int16)

        with ThreadPoolExecutor(max_workers=PREDICTOR_LAG) as pool:
            for start in range(0, t - 1, PREDICTOR_LAG):
                ks = range(start, min(start + PREDICTOR_LAG, t - 1))
                for k, vec in zip(ks, pool.map(job, ks), strict=False):
                    vectors[k] = vec
                if progress:
                    progress(ks[-1] + 1, t - 1)
    mv = MotionVectors(torch.stack(vectors), block_size, (h, w), source, search_range)
    return mv, torch.from_numpy(residuals) if keep_residual else None


def _check_precision(frames: torch.Tensor, motion: MotionVectors, name: str) -> None:
    if frame_precision(frames) != motion.precision:
        raise ValueError(f"{name} are {frames.dtype} but the motion vectors are for {motion.precision} frames "
                         f"(precision {motion.precision!r}); give {motion.precision} frames")


def residuals_for(frames: torch.Tensor, motion: MotionVectors) -> torch.Tensor:
    """Residuals [T-1, H, W, C] that make `motion` (from any source, e.g. x264) reconstruct `frames` exactly
    (lossless, so the reconstruction is the frame itself): uint8 frames, int16 r_t = frame_t - warp(frame_{t-1},
    m_t); float32 frames (motion.precision "float32"), int32 bits(frame_t) - bits(warp(frame_{t-1}, m_t)) mod 2^32."""
    validate_frames(frames)
    _check_precision(frames, motion, "frames")
    if tuple(frames.shape[1:3]) != tuple(motion.frame_size) or frames.shape[0] != motion.num_frames:
        raise ValueError(f"frames {tuple(frames.shape[:3])} do not match the motion vectors "
                         f"({motion.num_frames} frames of {motion.frame_size})")
    is_float = frames.dtype == torch.float32
    out = torch.empty((frames.shape[0] - 1, *frames.shape[1:]), dtype=torch.int32 if is_float else torch.int16)
    for i in range(frames.shape[0] - 1):
        cur = frames[i + 1].contiguous()
        pred = predict(frames[i].contiguous(), motion.vectors[i], motion.block_size)
        if is_float:
            out[i] = bits_difference(cur, pred)
        else:
            out[i] = torch.from_numpy(_to_hwc(cv2.subtract(cur.numpy(), pred.numpy(), dtype=cv2.CV_16S), cur.shape))
    return out


def decode(first_frame: torch.Tensor, motion: MotionVectors, residuals: torch.Tensor | None = None,
           residual_scale: float = 1.0, device: str | torch.device = "cpu",
           progress: Callable[[int, int], None] | None = None, backend: str = "auto") -> torch.Tensor:
    """Rebuild frames [T, H, W, C] in the motion's precision.

    uint8: frame_t = clip(warp(frame_{t-1}, m_t) + round(scale * r_t), 0, 255) (first_frame uint8, r int16).
    float32: exact_t = bits_add(warp(frame_{t-1}, m_t), d_t); scale 1 gives exact_t itself, any other scale
    pred + scale * (exact_t - pred) clipped to 0..1 (NaN -> 0) (first_frame float32, d int32).
    With the encoder's residuals and scale 1 this is exact. Without residuals (or scale 0) it is the motion-only
    warp, which transfers the motion onto any first frame of the same size.
    """
    if not isinstance(first_frame, torch.Tensor) or first_frame.ndim != 3:
        raise ValueError("first_frame must be a [height, width, channels] tensor")
    if first_frame.dtype != (torch.uint8 if motion.precision == "uint8" else torch.float32):
        raise ValueError(f"first_frame is {first_frame.dtype} but the motion vectors are for {motion.precision} "
                         f"frames (precision {motion.precision!r})")
    if tuple(first_frame.shape[:2]) != tuple(motion.frame_size):
        raise ValueError(f"first frame is {first_frame.shape[1]}x{first_frame.shape[0]} but the motion vectors "
                         f"were measured on {motion.frame_size[1]}x{motion.frame_size[0]} frames")
    if not np.isfinite(residual_scale):
        raise ValueError("residual_scale must be a finite number")
    pairs = motion.vectors.shape[0]
    if residuals is not None:
        if residuals.ndim != 4 or residuals.shape[0] == 0:
            raise ValueError("residuals must be a non-empty [frames-1, height, width, channels] batch")
        if residuals.shape[0] != pairs:
            raise ValueError(f"residuals have {residuals.shape[0]} frames but the motion vectors have {pairs} "
                             f"frame pairs; give exactly one residual per frame after the first")
        if tuple(residuals.shape[1:]) != tuple(first_frame.shape):
            raise ValueError(f"residual frames {tuple(residuals.shape[1:])} do not match the first frame "
                             f"{tuple(first_frame.shape)} (height, width, channels)")
        expect = torch.int16 if motion.precision == "uint8" else torch.int32
        if residuals.dtype != expect:
            raise ValueError(f"residuals are {residuals.dtype} but {motion.precision}-precision motion vectors "
                             f"take {expect} residuals (the Encode that made the vectors gives them)")
    device = torch.device(device)
    out = torch.empty((pairs + 1, *first_frame.shape), dtype=first_frame.dtype)
    out[0] = first_frame
    use_res = residuals is not None and residual_scale != 0
    if motion.precision == "float32":
        recon = first_frame.cpu()
        for i in range(pairs):
            pred = predict(recon, motion.vectors[i], motion.block_size)
            if use_res:
                exact = bits_add(pred, residuals[i])
                if residual_scale != 1.0:
                    exact = torch.nan_to_num(pred + residual_scale * (exact - pred), nan=0.0).clamp_(0, 1)
                pred = exact
            recon = out[i + 1] = pred
            if progress:
                progress(i + 1, pairs)
        return out
    if not _use_torch(device, backend):
        recon = first_frame.contiguous().numpy()
        for i in range(pairs):
            pred = blockmatch.warp(recon, motion.vectors[i].numpy(), motion.block_size)
            if use_res:
                res = residuals[i].numpy()
                if residual_scale != 1.0:
                    res = np.round(res.astype(np.float32) * residual_scale).clip(-510, 510).astype(np.int16)
                pred = _to_hwc(cv2.add(pred, res, dtype=cv2.CV_8U), pred.shape)  # saturates to 0..255
            recon = pred
            out[i + 1] = torch.from_numpy(recon)
            if progress:
                progress(i + 1, pairs)
        return out
    recon = first_frame.to(device)
    for i in range(pairs):
        pred = torch_ops.warp(recon, motion.vectors[i].to(device), motion.block_size).to(torch.int16)
        if use_res:
            res = residuals[i].to(device)
            if residual_scale != 1.0:
                res = torch.round(res.to(torch.float32) * residual_scale).clamp_(-510, 510)
            pred = pred + res.to(torch.int16)
        recon = pred.clamp_(0, 255).to(torch.uint8)
        out[i + 1] = recon.cpu()
        if progress:
            progress(i + 1, pairs)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 frames (inf when equal)."""
    mse = torch.mean((a.to(torch.float64) - b.to(torch.float64)) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0 ** 2 / mse))


def motion_only_psnr(frames: torch.Tensor, motion: MotionVectors) -> float:
    """Mean over frame pairs of PSNR(frame_t, warp(frame_{t-1}, m_t)): how much of the video the vectors alone
    explain (the residual-free prediction; the issue's quality metric)."""
    vals = [psnr(frames[i + 1], predict(frames[i], motion.vectors[i], motion.block_size))
            for i in range(motion.vectors.shape[0])]
    return float(np.mean(vals))
