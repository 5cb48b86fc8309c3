"""Seamless chunked decode core (decode/chunks.py): chunk plans (every frame kept once, context within bounds, edge
chunks, balanced centres), blend weights, memory-based choice, and stitching checked on real torch decoders whose
temporal / spatial reach is known: with context at least that reach, chunks and tiles give the full decode."""
import itertools

import pytest
import torch

from vcut.decode import Span, check_chunking, choose_chunking, chunks, decode_chunked, plan_spans, span_weights

PLANS = [(length, window, context) for length, window, context in itertools.product(range(1, 40), range(1, 24),
                                                                                     range(0, 9))
         if window >= length or window > 2 * context]


def greedy_count(length, window, context):
    """Independent count: take each call as far right as it can reach while keeping its frames' context."""
    if window >= length:
        return 1
    count, covered = 0, 0
    while covered < length:
        start = max(0, covered - context)
        stop = start + window
        covered = length if stop >= length else stop - context
        count += 1
    return count


@pytest.mark.parametrize("length,window,context", PLANS[::41])
def test_plan_keeps_every_frame_once_with_its_context(length, window, context):
    spans = plan_spans(length, window, context)
    kept = [f for s in spans for f in range(s.keep_start, s.keep_stop)]
    assert kept == list(range(length))  # every frame once, in order
    for s in spans:
        assert 0 <= s.start <= s.keep_start < s.keep_stop <= s.stop <= length
        assert s.stop - s.start == min(window, length)  # every call the same size: the same memory
        assert s.keep_start - s.start >= context or s.start == 0  # context within bounds, or the video's end
        assert s.stop - s.keep_stop >= context or s.stop == length
    assert spans[0].start == 0 and spans[-1].stop == length  # edge chunks reach the ends
    assert len(spans) == greedy_count(length, window, context)  # as few calls as possible
    inner = [s.keep for s in spans[1:-1]]
    assert not inner or max(inner) - min(inner) <= 1  # balanced centres


def test_all_plans_are_valid():
    """The whole grid (the parametrized test above checks every 41st plan in detail)."""
    for length, window, context in PLANS:
        spans = plan_spans(length, window, context)
        assert [f for s in spans for f in range(s.keep_start, s.keep_stop)] == list(range(length))
        assert all(s.keep_start - s.start >= context or s.start == 0 for s in spans)
        assert all(s.stop - s.keep_stop >= context or s.stop == length for s in spans)


def test_edge_chunks_keep_more_and_the_last_chunk_takes_extra_context():
    # 25 SVD-XT frames, 8 per call, 2 context: first/last keep up to 6, the interior 4
    spans = plan_spans(25, 8, 2)
    assert [(s.start, s.stop, s.keep_start, s.keep_stop) for s in spans] == [
        (0, 8, 0, 4), (2, 10, 4, 8), (6, 14, 8, 12), (10, 18, 12, 16), (14, 22, 16, 20), (17, 25, 20, 25)]
    assert plan_spans(5, 9, 3) == [Span(0, 5, 0, 5)]
    assert plan_spans(14, 14, 3) == [Span(0, 14, 0, 14)]
    # no context and a length the chunk divides: ComfyUI's plain split
    assert plan_spans(24, 4, 0) == [Span(i, i + 4, i, i + 4) for i in range(0, 24, 4)]
    # otherwise every call still decodes 4 frames (ComfyUI's last call here would decode 1 frame alone)
    assert [(s.start, s.stop, s.keep_start, s.keep_stop) for s in plan_spans(10, 4, 0)] == [
        (0, 4, 0, 3), (3, 7, 3, 6), (6, 10, 6, 10)]


def test_plan_refuses_windows_without_centre():
    with pytest.raises(ValueError, match="keeps nothing"):
        plan_spans(20, 8, 4)


@pytest.mark.parametrize("blend", [0, 1, 2, 3])
@pytest.mark.parametrize("scale", [1, 8])
def test_weights_sum_to_one_and_stay_on_centre_and_blend_zone(blend, scale):
    length, window, context = 23, 9, 3
    spans = plan_spans(length, window, context)
    weights = span_weights(spans, blend, scale)
    total = torch.zeros(length * scale)
    for s, w in zip(spans, weights, strict=False):
        assert w.shape == ((s.stop - s.start) * scale,) and (w >= 0).all() and (w <= 1).all()
        total[s.start * scale:s.stop * scale] += w
        lo, hi = (s.keep_start - blend - s.start) * scale, (s.keep_stop + blend - s.start) * scale
        assert (w[:max(lo, 0)] == 0).all() and (w[max(hi, 0):] == 0).all()
        if blend == 0:
            assert torch.equal(w, torch.zeros_like(w).index_fill_(
                0, torch.arange((s.keep_start - s.start) * scale, (s.keep_stop - s.start) * scale), 1.0))
    torch.testing.assert_close(total, torch.ones(length * scale))
    if blend:  # the ramp crosses the border: the left call still leads just before it, the right one just after
        border = spans[0].keep_stop * scale
        assert weights[0][border - 1] > 0.5 > weights[0][border]


def test_blend_is_capped_at_half_a_centre():
    spans = plan_spans(12, 5, 2)  # interior centres of 1 frame: no room to blend
    weights = span_weights(spans, 2)
    total = torch.zeros(12)
    for s, w in zip(spans, weights, strict=False):
        total[s.start:s.stop] += w
    assert torch.equal(total, torch.ones(12))


def test_check_chunking_names_the_input():
    check_chunking(25, 25, 8)  # one call: any context is fine
    for args, name in [((25, 0, 0), "chunk_frames must be at least 1"), ((25, 26, 2), "larger than the video"),
                       ((25, 8, 4), "leaves no centre frames"), ((25, 8, -1), "context_frames"),
                       ((25, 9, 2, 3), "blend_frames"), ((0, 1, 0), "frames: the video has 0 frames")]:
        with pytest.raises(ValueError, match=name):
            check_chunking(*args)


def test_choose_chunking_from_free_memory():
    per_pixel = 1000.0
    bytes_per_frame = lambda h, w: per_pixel * h * w  # noqa: E731  (a one-line helper)
    frame = bytes_per_frame(72, 128)
    assert choose_chunking(25, 72, 128, 4, 30 * frame, bytes_per_frame) == (25, None)  # all fits: one call
    assert choose_chunking(25, 72, 128, 4, 13.5 * frame, bytes_per_frame) == (13, None)  # 13 >= 3*4+1
    chunk, tile = choose_chunking(25, 72, 128, 4, 4.2 * frame, bytes_per_frame, tile_context=8)
    assert tile is not None and 2 * 8 < tile < 128 and tile % 8 == 0
    assert chunk >= 13 and chunk * bytes_per_frame(min(72, tile), min(128, tile)) <= 4.2 * frame
    # the largest tile that fits: one step (8) larger does not
    bigger = tile + 8
    assert 13 * bytes_per_frame(min(72, bigger), min(128, bigger)) > 4.2 * frame
    chunk, tile = choose_chunking(25, 72, 128, 4, 1.0, bytes_per_frame, tile_context=8)  # nothing fits
    assert (chunk, tile) == (13, 24)  # the smallest multiple of 8 above 2 x 8


# ---- stitching on real decoders with a known reach ----

class TemporalDecoder(torch.nn.Module):
    """`depth` temporal convs (kernel 3 over frames, zero padding, as SVD's time_stack / time_mix_conv), so an output
    frame depends on `depth` frames on each side; then a 2x nearest upsample. Frames are the batch, as in SVD."""

    def __init__(self, depth, channels=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.convs = torch.nn.ModuleList(torch.nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
                                         for _ in range(depth))

    def forward(self, z):  # [frames, c, h, w] -> [frames, c, 2h, 2w]
        x = z.movedim(0, 1).unsqueeze(0)
        for conv in self.convs:
            x = x + torch.tanh(conv(x))
        x = x.squeeze(0).movedim(1, 0)
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


class SpatialDecoder(torch.nn.Module):
    """`depth` 3x3 convs (zero padding) at latent resolution, reach `depth` latent pixels, then a 2x upsample."""

    def __init__(self, depth, channels=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth))

    def forward(self, z):
        for conv in self.convs:
            z = z + torch.tanh(conv(z))
        return torch.nn.functional.interpolate(z, scale_factor=2, mode="nearest")


@torch.no_grad()
def test_one_chunk_is_the_full_decode_exactly():
    decoder = TemporalDecoder(3)
    z = torch.randn(9, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(decode_chunked(z, decoder, 9, 4, scale=2), decoder(z))


@torch.no_grad()
@pytest.mark.parametrize("window,blend", [(9, 0), (12, 1), (7, 0)])
def test_context_at_least_the_reach_gives_the_full_decode(window, blend):
    reach = 3 if window != 7 else 2
    decoder = TemporalDecoder(reach)
    z = torch.randn(25, 4, 3, 5, generator=torch.Generator().manual_seed(2))
    full = decoder(z)
    context = reach + blend  # blended frames keep `reach` context
    calls = []
    out = decode_chunked(z, lambda part: calls.append(part.shape[0]) or decoder(part), window, context, blend,
                         scale=2, progress=None)
    assert len(calls) > 2 and set(calls) == {window}
    torch.testing.assert_close(out, full, rtol=0, atol=1e-5)


@torch.no_grad()
def test_without_context_the_chunk_borders_break_and_context_repairs_them():
    decoder = TemporalDecoder(3)
    z = torch.randn(24, 4, 3, 5, generator=torch.Generator().manual_seed(3))
    full = decoder(z)
    split = torch.cat([decoder(z[i:i + 4]) for i in range(0, 24, 4)])  # ComfyUI's plain split into 4-frame calls
    plain = decode_chunked(z, decoder, 4, 0, scale=2)
    assert torch.equal(plain, split)  # context 0 is the plain split
    err = lambda out: (out - full).abs().amax(dim=(1, 2, 3))  # noqa: E731  (a one-line helper)
    assert (err(plain)[[3, 4, 7, 8, 11, 12]] > 1e-3).all()  # border frames lose their neighbours
    seamless = decode_chunked(z, decoder, 4 + 2 * 3, 3, scale=2)  # 4 centre frames + the reach on each side
    assert err(seamless).max() < 1e-5
    partial = decode_chunked(z, decoder, 4 + 2 * 1, 1, scale=2)
    assert err(seamless).max() < err(partial).max() < err(plain).max()


@torch.no_grad()
def test_spatial_tiles_with_margins_give_the_full_decode():
    decoder = SpatialDecoder(2)
    z = torch.randn(3, 3, 21, 30, generator=torch.Generator().manual_seed(4))
    full = decoder(z)
    done = []
    out = decode_chunked(z, decoder, 3, 0, tile=12, tile_context=4, scale=2,
                         progress=lambda i, n: done.append((i, n)))
    rows, cols = len(plan_spans(21, 12, 4)), len(plan_spans(30, 12, 4))
    assert rows * cols > 4 and done == [(i + 1, rows * cols) for i in range(rows * cols)]
    torch.testing.assert_close(out, full, rtol=0, atol=1e-5)  # feather over half the margin: reach 2 <= 4 - 2
    rough = decode_chunked(z, decoder, 3, 0, tile=12, tile_context=0, scale=2)
    assert (rough - full).abs().max() > 1e-3  # tiles without margins show seams


@torch.no_grad()
def test_chunks_and_tiles_together():
    temporal, spatial = TemporalDecoder(2, channels=3), SpatialDecoder(1)
    decoder = lambda z: spatial(temporal(z)[..., ::2, ::2])  # noqa: E731  (reach 2 frames, 1 latent pixel)
    z = torch.randn(17, 3, 14, 18, generator=torch.Generator().manual_seed(5))
    out = decode_chunked(z, decoder, 8, 2, tile=10, tile_context=2, scale=2)
    torch.testing.assert_close(out, decoder(z), rtol=0, atol=1e-5)


def test_decode_fn_with_the_wrong_scale_is_reported():
    z = torch.zeros(4, 4, 3, 3)
    with pytest.raises(ValueError, match="scale 8"):
        decode_chunked(z, lambda part: torch.zeros(part.shape[0], 3, 6, 6), 4, 0, scale=8)


def test_input_is_not_modified():
    decoder = TemporalDecoder(1)
    z = torch.randn(10, 4, 2, 2, generator=torch.Generator().manual_seed(6))
    before = z.clone()
    with torch.no_grad():
        decode_chunked(z, decoder, 5, 1, 1, tile=1, tile_context=0, scale=2)
    assert torch.equal(z, before)


def test_out_of_memory_retries_with_halved_tiles_until_none_has_a_centre():
    """Seamless Video Decode's retry policy: untiled -> half the larger side -> half again ..., a tile must keep a
    centre inside its margins; the retry hook runs before every new try; other errors pass through."""
    class OutOfMemory(Exception):
        pass

    tried, retried = [], []

    def decode(tile, fits_at=None):
        tried.append(tile)
        if fits_at is None or tile is None or tile > fits_at:
            raise OutOfMemory()
        return torch.full((1,), float(tile))

    out = chunks.decode_until_it_fits(lambda t: decode(t, fits_at=40), None, 72, 128, 8,
                                      lambda e: isinstance(e, OutOfMemory), retried.append)
    assert tried == [None, 64, 32] and retried == [64, 32] and float(out) == 32
    tried.clear()
    with pytest.raises(chunks.NoSmallerTile) as failed:
        chunks.decode_until_it_fits(decode, 40, 72, 128, 8, lambda e: isinstance(e, OutOfMemory))
    assert tried == [40, 20] and failed.value.tile == 20  # 10 would leave no centre inside 2 x 8 margins
    with pytest.raises(ValueError, match="not memory"):
        chunks.decode_until_it_fits(lambda t: (_ for _ in ()).throw(ValueError("not memory")), None, 72, 128, 8,
                                    lambda e: isinstance(e, OutOfMemory))
    assert chunks.smaller_tile(None, 72, 128, 8) == 64 and chunks.smaller_tile(200, 72, 128, 8) == 64
    assert chunks.smaller_tile(64, 72, 128, 8) == 32 and chunks.smaller_tile(32, 72, 128, 8) is None  # 16 = 2 x 8
