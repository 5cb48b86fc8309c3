"""The motion vectors x264 itself chooses, read back through PyAV and mapped onto MotionVectors.

Encode with libx264 (P-frames only: bframes=0, ref=1, no periodic/scene-cut I-frames, so every vector points at
the previous frame), decode with ``flags2=+export_mvs`` and read each frame's MOTION_VECTORS side data.

Mapping (documented choices):
- partitions: H.264 partitions are 16x16, 16x8, 8x16, 8x8, 8x4, 4x8 or 4x4, all unions of 4x4 cells, so a 4-pixel
  block grid holds them exactly (each exported partition is painted onto the cells it covers). For 8 or 16-pixel
  blocks each block takes the vector of the partition covering its centre pixel (block/2, block/2).
- precision: x264 vectors are quarter-pel (motion_scale 4); our decoder copies whole pixels, so each component is
  rounded to the nearest pixel, halves away from zero: dx = sign(m) * floor((|m| + scale/2) / scale).
- intra-coded blocks carry no vector and get (0, 0); their content travels in the residual.
- x264 works on yuv420p, so odd widths/heights are edge-padded to even for encoding; vectors are read on the
  original grid.
"""
from __future__ import annotations

import io

import av
import numpy as np
import torch

from .blockmatch import grid_size
from .types import MotionVectors

X264_PARAMS = "bframes=0:ref=1:keyint=100000:min-keyint=100000:scenecut=0"


def encode_h264(frames: np.ndarray, preset: str = "medium", crf: int = 18, fps: int = 25) -> bytes:
    """H.264 elementary stream (raw Annex B) of uint8 RGB frames [T, H, W, 3] with P-frames only."""
    t, h, w, _ = frames.shape
    eh, ew = h + h % 2, w + w % 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf), "x264-params": X264_PARAMS}
        for i in range(t):
            img = frames[i]
            if (eh, ew) != (h, w):
                img = np.pad(img, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _round_qpel(m: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Nearest whole pixel of m / scale, halves away from zero."""
    return np.sign(m) * ((np.abs(m) + scale // 2) // scale)


def vectors_from_side_data(mvs: np.ndarray | None, height: int, width: int, block: int) -> np.ndarray:
    """Map one frame's AVMotionVector records onto an int16 [Hb, Wb, 2] grid of (dx, dy)."""
    cell = 4
    hc, wc = grid_size(height, width, cell)
    grid = np.zeros((hc, wc, 2), np.int32)
    if mvs is not None and len(mvs):
        mvs = mvs[mvs["source"] < 0]  # past reference (the previous frame with ref=1)
        scale = np.maximum(mvs["motion_scale"].astype(np.int64), 1)
        # AVMotionVector: src = dst + motion / scale; our vector points from the block to its source.
        dx = _round_qpel(mvs["motion_x"].astype(np.int64), scale)
        dy = _round_qpel(mvs["motion_y"].astype(np.int64), scale)
        x0 = mvs["dst_x"].astype(np.int64) - mvs["w"].astype(np.int64) // 2
        y0 = mvs["dst_y"].astype(np.int64) - mvs["h"].astype(np.int64) // 2
        for k in range(len(mvs)):
            ys, xs = max(y0[k] // cell, 0), max(x0[k] // cell, 0)
            ye, xe = min((y0[k] + mvs["h"][k]) // cell, hc), min((x0[k] + mvs["w"][k]) // cell, wc)
            grid[ys:ye, xs:xe] = (dx[k], dy[k])
    if block == cell:
        return grid.astype(np.int16)
    hb, wb = grid_size(height, width, block)
    cy = np.minimum((np.arange(hb) * block + block // 2) // cell, hc - 1)
    cx = np.minimum((np.arange(wb) * block + block // 2) // cell, wc - 1)
    return grid[cy][:, cx].astype(np.int16)


def decode_vectors(data: bytes, height: int, width: int, block: int = 4) -> list[np.ndarray]:
    """Vectors of every frame after the first, in display order, from an H.264 stream made by ``encode_h264``."""
    out = []
    with av.open(io.BytesIO(data), format="h264") as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        for i, frame in enumerate(container.decode(stream)):
            if i == 0:
                continue
            side = frame.side_data.get("MOTION_VECTORS")
            out.append(vectors_from_side_data(side.to_ndarray() if side is not None else None, height, width, block))
    return out


def x264_motion_vectors(frames: torch.Tensor, block_size: int = 4, preset: str = "medium",
                        crf: int = 18) -> MotionVectors:
    """MotionVectors chosen by x264 (`preset`) for uint8 RGB frames [T, H, W, 3]."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError("frames must be uint8 RGB [frames, height, width, 3]")
    if frames.shape[0] < 2:
        raise ValueError("x264 vectors need at least 2 frames")
    t, h, w, _ = frames.shape
    vecs = decode_vectors(encode_h264(frames.cpu().numpy(), preset, crf), h, w, block_size)
    if len(vecs) != t - 1:
        raise RuntimeError(f"x264 returned {len(vecs) + 1} frames for {t} input frames")
    v = torch.from_numpy(np.stack(vecs))
    rng = int(v.abs().max().item()) if v.numel() else 0
    return MotionVectors(v, block_size, (h, w), f"x264:{preset}", rng, {"crf": crf, "x264-params": X264_PARAMS})
