"""Chunk plans with context, blend weights and stitching for decoders that mix neighbouring frames.

SVD's video VAE decoder runs temporal convolutions (kernel 3 over frames, zero padding at the ends of the frames it
is given) in every ResBlock and in its output conv. Decoding a video in independent chunks, as ComfyUI does when
memory is short, gives each chunk's border frames padding instead of their real neighbours: a seam every chunk.

Here a chunk is a window of `chunk_frames` frames decoded in one call, of which only the centre is kept: every kept
frame was decoded with at least `context_frames` real neighbours on each side (or the video's own end, which a full
decode pads too). With more context than the decoder's temporal reach the chunked decode equals the full one; SVD's
reach is long (29 stacked kernel-3 convs, and GroupNorm statistics over all frames of a call), so the benchmark
(bench/decode_bench.py) measures how fast the error falls with the context. `blend_frames` cross-fades neighbouring
chunks linearly around each border, inside the context. The same 1-D plan, applied to rows and columns, tiles space
with margins and a linear feather across tile borders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..validation import SettingError


@dataclass(frozen=True)
class Span:
    """One decode call along an axis: it decodes [start, stop) and contributes its centre [keep_start, keep_stop)."""
    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def keep(self) -> int:
        return self.keep_stop - self.keep_start


def check_context(context_frames: int, blend_frames: int = 0) -> None:
    """The temporal settings that hold whatever the chunk size: context_frames >= 0, blend_frames in
    0..context_frames (SettingError naming the setting)."""
    if context_frames < 0:
        raise SettingError("context_frames", f"context_frames must be 0 or more, got {context_frames}")
    if blend_frames < 0 or blend_frames > context_frames:
        raise SettingError("blend_frames", f"blend_frames must lie in 0..context_frames ({context_frames}): blended "
                                           f"frames come from the context of the neighbouring chunk; got "
                                           f"{blend_frames}")


def check_chunking(frames: int, chunk_frames: int, context_frames: int, blend_frames: int = 0) -> None:
    """Raises SettingError, naming the setting, for settings that cannot give a seamless plan for `frames`
    frames."""
    if frames < 1:
        raise SettingError("frames", f"frames: the video has {frames} frames; need at least 1")
    if chunk_frames < 1:
        raise SettingError("chunk_frames", f"chunk_frames must be at least 1 (frames decoded per call), got "
                                           f"{chunk_frames}")
    if chunk_frames > frames:
        raise SettingError("chunk_frames", f"chunk_frames={chunk_frames} is larger than the video ({frames} latent "
                                           f"frames); use at most {frames} ({frames} decodes the whole video in one "
                                           f"call)")
    check_context(context_frames, blend_frames)
    if chunk_frames < frames and chunk_frames <= 2 * context_frames:
        raise SettingError("context_frames", f"context_frames={context_frames} on each side of a chunk of "
                                             f"chunk_frames={chunk_frames} leaves no centre frames to keep; use "
                                             f"chunk_frames >= {2 * context_frames + 1} or context_frames <= "
                                             f"{(chunk_frames - 1) // 2}")


def check_tiling(tile_size: int, tile_overlap: int, height: int, width: int, scale: int) -> tuple[int | None, int]:
    """(tile or None, margin) in latent pixels for spatial tiles of `tile_size` output pixels with `tile_overlap`
    pixels of margin on each side, on a latent of height x width that decodes to `scale` pixels per latent pixel.
    Both settings are multiples of `scale` (0 or more; tile_size 0 = no tiles), and a tile smaller than the latent
    keeps a centre inside its margins; else SettingError naming the setting."""
    for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
        if value < 0 or value % scale:
            raise SettingError(name, f"{name} must be a multiple of {scale} pixels (0 or more), got {value}")
    tile, margin = (tile_size // scale or None), tile_overlap // scale
    if tile is not None and tile < max(height, width) and tile <= 2 * margin:
        raise SettingError("tile_overlap", f"tile_overlap={tile_overlap} on each side of a tile of "
                                           f"tile_size={tile_size} leaves no centre; use tile_size > "
                                           f"{2 * tile_overlap}")
    return tile, margin


def plan_spans(length: int, window: int, context: int) -> list[Span]:
    """Cover [0, length) with calls of `window` positions that keep their centres, each kept position having at
    least `context` positions on both sides inside its call (or the axis end). The kept centres partition the axis
    and are balanced; every call has exactly min(window, length) positions (the same memory for each)."""
    if length < 1 or window < 1 or context < 0:
        raise ValueError(f"plan_spans: need length >= 1, window >= 1, context >= 0; got {length}, {window}, {context}")
    if window >= length:
        return [Span(0, length, 0, length)]
    centre = window - 2 * context  # what an interior call keeps; the first and last keep `context` more
    if centre < 1:
        raise ValueError(f"plan_spans: a window of {window} with context {context} on each side keeps nothing")
    count = 2 + max(0, math.ceil((length - 2 * (centre + context)) / centre))
    keeps = [centre + context] + [centre] * (count - 2) + [centre + context]
    for _ in range(sum(keeps) - length):  # shrink the largest first: balanced centres, fewest calls
        keeps[keeps.index(max(keeps))] -= 1
    spans, keep_start = [], 0
    for keep in keeps:
        start = min(max(keep_start - context, 0), length - window)
        spans.append(Span(start, start + window, keep_start, keep_start + keep))
        keep_start += keep
    return spans


def span_weights(spans: list[Span], blend: int = 0, scale: int = 1) -> list[torch.Tensor]:
    """Per call, the weight of each of its decoded positions (in output units: `scale` outputs per input position).
    Weights are 1 on the kept centre and 0 elsewhere, except that around each border between two calls a zone of
    `blend` positions on either side ramps linearly from one call to the other (capped at half of either centre, so
    zones never meet). At every output position the weights of all calls sum to 1."""
    weights = []
    for span in spans:
        w = torch.zeros((span.stop - span.start) * scale)
        w[(span.keep_start - span.start) * scale:(span.keep_stop - span.start) * scale] = 1.0
        weights.append(w)
    for i in range(len(spans) - 1):
        left, right = spans[i], spans[i + 1]
        half = min(blend, left.keep // 2, right.keep // 2)
        if half == 0:
            continue
        border = left.keep_stop
        if border + half > left.stop or border - half < right.start:
            raise ValueError("span_weights: blend zone reaches outside a call (blend must not exceed the context)")
        n = 2 * half * scale
        ramp = (torch.arange(n, dtype=torch.float32) + 0.5) / n  # weight of the right call across the zone
        a = (border - half - left.start) * scale
        weights[i][a:a + n] = 1.0 - ramp
        b = (border - half - right.start) * scale
        weights[i + 1][b:b + n] = ramp
    return weights


def choose_chunking(frames: int, height: int, width: int, context_frames: int, free_bytes: float,
                    bytes_per_frame: Callable[[int, int], float], tile_context: int = 8) -> tuple[int, int | None]:
    """(chunk_frames, tile or None) from a free-memory estimate. bytes_per_frame(h, w) is the memory one frame of an
    h x w latent takes in a call (ComfyUI's vae.memory_used_decode). The whole video if it fits; else the most frames
    that fit, if that keeps at least context_frames + 1 centre frames per chunk; else square tiles (latent size
    `tile`, margin tile_context) small enough for such a chunk. When nothing fits, the smallest tile and chunk."""
    fits = int(free_bytes // max(1.0, bytes_per_frame(height, width)))
    if fits >= frames:
        return frames, None
    need = min(frames, 3 * context_frames + 1)
    if fits >= need:
        return fits, None
    smallest = 2 * tile_context + 1
    sizes = [t for t in range(8 * ((max(height, width) - 1) // 8), smallest - 1, -8) if t >= smallest] or [smallest]
    for tile in sizes:
        fits = int(free_bytes // max(1.0, bytes_per_frame(min(height, tile), min(width, tile))))
        if fits >= need:
            return min(frames, fits), tile
    return need, sizes[-1]


def decode_chunked(latent: torch.Tensor, decode_fn: Callable[[torch.Tensor], torch.Tensor], chunk_frames: int,
                   context_frames: int, blend_frames: int = 0, tile: int | None = None, tile_context: int = 0,
                   scale: int = 8, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Decode a video latent [frames, channels, h, w] in chunks (and optional square tiles of `tile` latent pixels
    with `tile_context` margins) and stitch: out = sum over calls of weight * decode_fn(part), the weights of
    span_weights (temporal blend `blend_frames`, spatial feather over half the tile margin) summing to 1 everywhere.
    decode_fn maps a latent part [n, c, ph, pw] to [n, out_c, ph*scale, pw*scale]; it sees each part as a whole video.
    With one chunk and no tiles the result is decode_fn(latent) exactly (weights 1). progress(done, total) after
    each call."""
    frames, _, height, width = latent.shape
    check_chunking(frames, chunk_frames, context_frames, blend_frames)
    times = plan_spans(frames, chunk_frames, context_frames)
    time_w = span_weights(times, blend_frames)
    if tile is not None and tile < max(height, width):
        rows, cols = plan_spans(height, tile, tile_context), plan_spans(width, tile, tile_context)
    else:
        rows, cols = [Span(0, height, 0, height)], [Span(0, width, 0, width)]
    row_w, col_w = span_weights(rows, tile_context // 2, scale), span_weights(cols, tile_context // 2, scale)
    total, done, out = len(times) * len(rows) * len(cols), 0, None
    for t, tw in zip(times, time_w, strict=False):
        used = torch.nonzero(tw).flatten()  # frames this chunk contributes to (its centre and blend zones)
        first, last = int(used[0]), int(used[-1]) + 1
        for r, rw in zip(rows, row_w, strict=False):
            for c, cw in zip(cols, col_w, strict=False):
                part = decode_fn(latent[t.start:t.stop, :, r.start:r.stop, c.start:c.stop])
                expected = (t.stop - t.start, (r.stop - r.start) * scale, (c.stop - c.start) * scale)
                if (part.shape[0], *part.shape[2:]) != expected:
                    raise ValueError(f"decode_fn returned {tuple(part.shape)} for a latent part of "
                                     f"{t.stop - t.start} frames, {r.stop - r.start}x{c.stop - c.start}; expected "
                                     f"[{expected[0]}, channels, {expected[1]}, {expected[2]}] (scale {scale})")
                if out is None:
                    out = torch.zeros((frames, part.shape[1], height * scale, width * scale), dtype=part.dtype,
                                      device=part.device)
                weight = (tw[first:last].view(-1, 1, 1, 1) * rw.view(1, 1, -1, 1) * cw.view(1, 1, 1, -1))
                out[t.start + first:t.start + last, :, r.start * scale:r.stop * scale,
                    c.start * scale:c.stop * scale] += weight.to(part) * part[first:last]
                del part
                done += 1
                if progress is not None:
                    progress(done, total)
    return out


class NoSmallerTile(Exception):
    """Out of memory at the smallest tile that still has a centre inside its margins."""

    def __init__(self, tile: int):
        super().__init__(f"out of memory with tiles of {tile} latent pixels, the smallest that leave a centre")
        self.tile = tile


def smaller_tile(tile: int | None, height: int, width: int, margin: int) -> int | None:
    """The tile (latent pixels) to retry with after an out-of-memory error: half the current tile, or half the larger
    side when the decode was not tiled; None when half would leave no centre inside the margins."""
    current = tile if tile and tile < max(height, width) else max(height, width)
    return current // 2 if current // 2 > 2 * margin else None


def decode_until_it_fits(decode: Callable[[int | None], torch.Tensor], tile: int | None, height: int, width: int,
                         margin: int, is_out_of_memory: Callable[[BaseException], bool],
                         before_retry: Callable[[int], None] = lambda tile: None) -> torch.Tensor:
    """decode(tile), and after each out-of-memory error decode(smaller_tile(...)) again: before_retry(new tile) runs
    after the except block has ended, so the failed call's tensors can be freed first. NoSmallerTile when no smaller
    tile is left; any other error is raised as it is."""
    while True:
        try:
            return decode(tile)
        except Exception as error:  # the caller says which errors are out-of-memory
            if not is_out_of_memory(error):
                raise
        smaller = smaller_tile(tile, height, width, margin)
        if smaller is None:
            raise NoSmallerTile(tile or max(height, width))
        before_retry(smaller)
        tile = smaller
