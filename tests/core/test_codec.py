"""Motion-vector codec core: exact vectors on synthetic translations, the exhaustive search checked against a
brute-force loop, CPU (OpenCV) and torch implementations agreeing, lossless round trips on real clips, x264
vectors, and bad inputs."""
import itertools

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import TEST_DATA
from vcut.bench.clips import read_frames
from vcut.codec import (
    MotionVectors,
    blockmatch,
    decode,
    encode,
    encode_pairs,
    image_to_residual,
    image_to_uint8,
    motion_only_psnr,
    motion_preview,
    predict,
    residual_to_image,
    residuals_for,
    torch_ops,
    uint8_to_image,
    x264_motion_vectors,
)

VIDEOS = TEST_DATA / "video"


def load_clip(name: str, count: int, start: int = 0, crop=None) -> torch.Tensor:
    """`count` RGB frames of a shared clip from frame `start`, cropped to (y, x, h, w)."""
    frames = read_frames(VIDEOS / name, count, start)
    if crop:
        y, x, h, w = crop
        frames = frames[:, y:y + h, x:x + w]
    return torch.from_numpy(np.ascontiguousarray(frames))


def photo(name="chelsea.png") -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(TEST_DATA / "photos" / name)), cv2.COLOR_BGR2RGB)


def brute_force_vectors(cur_y, ref_y, block, radius):
    """Independent reference: Python loops over blocks and shifts, clamped reference, ties to the shortest vector."""
    h, w = cur_y.shape
    hb, wb = -(-h // block), -(-w // block)
    cur = np.pad(cur_y.astype(np.int64), ((0, hb * block - h), (0, wb * block - w)), mode="edge")
    out = np.zeros((hb, wb, 2), np.int64)
    for by, bx in itertools.product(range(hb), range(wb)):
        ys, xs = np.arange(by * block, by * block + block), np.arange(bx * block, bx * block + block)
        best = None
        for dy, dx in itertools.product(range(-radius, radius + 1), repeat=2):
            pred = ref_y[np.clip(ys + dy, 0, h - 1)][:, np.clip(xs + dx, 0, w - 1)].astype(np.int64)
            key = (np.abs(cur[ys][:, xs] - pred).sum(), dx * dx + dy * dy, dy, dx)
            if best is None or key < best:
                best = key
        out[by, bx] = (best[3], best[2])
    return out


@pytest.mark.parametrize("shift", [(0, 0), (3, -5), (-7, 2), (16, -16), (-11, 13)])
@pytest.mark.parametrize("method", ["fast", "exhaustive", "torch"])
def test_synthetic_translation_recovers_exact_vectors(shift, method):
    img = photo()
    dx, dy = shift
    y0, x0, h, w, block = 60, 120, 96, 128, 16
    prev = img[y0:y0 + h, x0:x0 + w]
    cur = img[y0 + dy:y0 + dy + h, x0 + dx:x0 + dx + w]  # cur[y, x] = prev[y + dy, x + dx]
    if method == "torch":
        vec = torch_ops.exhaustive_search(torch_ops.luma(torch.from_numpy(cur)), torch_ops.luma(torch.from_numpy(prev)),
                                          block, 16).numpy()
    else:
        search = blockmatch.fast_search if method == "fast" else blockmatch.exhaustive_search
        vec = search(blockmatch.luma_u8(cur), blockmatch.luma_u8(prev), block, 16)
    # blocks whose source square lies inside the previous frame must get exactly the shift
    by, bx = np.meshgrid(np.arange(h // block), np.arange(w // block), indexing="ij")
    inside = ((by * block + dy >= 0) & (by * block + dy + block <= h) & (bx * block + dx >= 0)
              & (bx * block + dx + block <= w))
    assert inside.sum() >= 6
    assert (vec[inside] == np.array(shift)).all(), vec[..., 0]


def test_exhaustive_searches_match_brute_force_on_real_frames():
    clip = load_clip("car-detection.mp4", 2, start=100, crop=(200, 300, 21, 35))  # odd size: padding path
    cur_y = blockmatch.luma_u8(clip[1].numpy())
    ref_y = blockmatch.luma_u8(clip[0].numpy())
    for block, radius in [(8, 3), (4, 2)]:
        expected = brute_force_vectors(cur_y, ref_y, block, radius)
        assert (blockmatch.exhaustive_search(cur_y, ref_y, block, radius) == expected).all()
        got = torch_ops.exhaustive_search(torch.from_numpy(cur_y), torch.from_numpy(ref_y), block, radius)
        assert (got.numpy() == expected).all()


def test_torch_luma_and_warp_match_opencv_path():
    clip = load_clip("vid_h264.mp4", 2, start=40, crop=(100, 200, 70, 90))
    assert np.array_equal(torch_ops.luma(clip[0]).numpy(), blockmatch.luma_u8(clip[0].numpy()))
    rng = np.random.default_rng(0)
    for block in (4, 8, 16):
        hb, wb = -(-70 // block), -(-90 // block)
        vec = rng.integers(-40, 41, (hb, wb, 2)).astype(np.int32)  # far outside the frame too: clamped
        a = blockmatch.warp(clip[0].numpy(), vec, block)
        b = torch_ops.warp(clip[0], torch.from_numpy(vec), block).numpy()
        assert np.array_equal(a, b)


def test_fast_search_is_never_better_than_exhaustive_and_close_in_psnr():
    clip = load_clip("vid_h264.mp4", 4, start=60, crop=(150, 300, 160, 240))
    fast, _ = encode(clip, 16, 16, "fast")
    full, _ = encode(clip, 16, 16, "exhaustive")
    for i in range(3):
        cur_y = blockmatch.luma_u8(clip[i + 1].numpy()).astype(np.int64)
        sads = []
        for mv in (fast, full):
            pred = blockmatch.luma_u8(predict(clip[i], mv.vectors[i], 16).numpy()).astype(np.int64)
            sads.append(np.abs(cur_y - pred).reshape(10, 16, 15, 16).sum((1, 3)))
        assert (sads[1] <= sads[0]).all()  # exhaustive is the per-block argmin
    assert motion_only_psnr(clip, fast) > motion_only_psnr(clip, full) - 0.5


@pytest.mark.parametrize("name,start,crop", [("car-detection.mp4", 150, (180, 250, 101, 163)),
                                             ("vid_h264.mp4", 207, (300, 500, 90, 150))])  # 207..212: scene cut
@pytest.mark.parametrize("block", [4, 8, 16])
@pytest.mark.parametrize("method", ["fast", "exhaustive"])
def test_lossless_round_trip_on_real_clips(name, start, crop, block, method):
    clip = load_clip(name, 6, start, crop)
    mv, res = encode(clip, block, 8, method)
    assert mv.vectors.shape == (5, -(-crop[2] // block), -(-crop[3] // block), 2)
    assert res.dtype == torch.int16 and res.abs().max() <= 255
    assert torch.equal(decode(clip[0], mv, res), clip)
    # through the ComfyUI IMAGE representation as well
    images = uint8_to_image(clip)
    assert torch.equal(image_to_uint8(images), clip)
    again = decode(image_to_uint8(images[0]), mv, image_to_residual(residual_to_image(res)))
    assert torch.equal(uint8_to_image(again), images)


def test_motion_only_decode_is_the_warp_chain_and_moves_a_new_image():
    clip = load_clip("vid_h264.mp4", 4, start=60, crop=(150, 300, 64, 96))
    mv, res = encode(clip, 16, 8)
    other = torch.from_numpy(np.ascontiguousarray(photo("coffee.png")[:64, :96]))
    out = decode(other, mv)
    expect = other
    for i in range(3):
        expect = predict(expect, mv.vectors[i], 16)
        assert torch.equal(out[i + 1], expect)
    assert torch.equal(decode(other, mv, res, residual_scale=0.0), out)
    half = decode(clip[0], mv, res, residual_scale=0.5)
    assert not torch.equal(half, clip) and torch.equal(half[0], clip[0])


def test_residual_and_image_mappings_are_exact():
    r = torch.arange(-255, 256, dtype=torch.int16)
    assert torch.equal(image_to_residual(residual_to_image(r)), r)
    assert residual_to_image(torch.zeros(1)).item() == 0.5  # zero residual is mid-grey
    v = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(image_to_uint8(uint8_to_image(v)), v)


def test_encode_pairs_is_lazy_frame_pair_by_frame_pair():
    clip = load_clip("car-detection.mp4", 3, start=10, crop=(0, 0, 48, 64))
    seen = []

    def stream():
        for i in range(3):
            seen.append(i)
            yield clip[i]
        raise AssertionError("no more frames")

    it = encode_pairs(stream(), 16, 4)
    next(it)
    assert seen == [0, 1]  # the first pair is out before the third frame is read


def test_x264_vectors_follow_a_translation_and_decode_exactly():
    img = photo("astronaut.png")
    frames = torch.from_numpy(np.stack([img[40 + 2 * t:40 + 2 * t + 96, 100 + 3 * t:100 + 3 * t + 128]
                                        for t in range(4)]))  # content moves by (-3, -2) px per frame
    mv = x264_motion_vectors(frames, block_size=4, preset="medium")
    assert mv.vectors.shape == (3, 24, 32, 2) and mv.source == "x264:medium"
    interior = mv.vectors[:, 2:-2, 2:-2].reshape(-1, 2)
    share = (interior == torch.tensor([3, 2], dtype=torch.int16)).all(-1).float().mean().item()
    assert share > 0.8, share
    assert torch.equal(decode(frames[0], mv, residuals_for(frames, mv)), frames)
    coarse = x264_motion_vectors(frames, block_size=16, preset="ultrafast")
    assert coarse.vectors.shape == (3, 6, 8, 2)
    assert motion_only_psnr(frames, coarse) > 25


def test_x264_side_data_mapping_of_partitions_and_quarter_pel():
    from vcut.codec.x264 import vectors_from_side_data
    dtype = [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"), ("dst_x", "<i2"),
             ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"), ("motion_y", "<i4"), ("motion_scale", "<u2")]
    mvs = np.array([(-1, 16, 8, 0, 0, 8, 4, 0, 6, -2, 4),     # 16x8 at (0,0): (1.5, -0.5) px -> (2, -1)
                    (-1, 8, 8, 0, 0, 28, 12, 0, -5, 9, 4),    # 8x8 at (24,8): (-1.25, 2.25) -> (-1, 2)
                    (1, 16, 16, 0, 0, 8, 24, 0, 40, 40, 4)],  # future reference: ignored
                   dtype=dtype)
    grid = vectors_from_side_data(mvs, 32, 32, 4)
    assert (grid[0:2, 0:4] == (2, -1)).all() and (grid[2:4, 6:8] == (-1, 2)).all()
    assert (grid[4:] == 0).all() and (grid[2:4, :6] == 0).all()  # uncovered (intra) cells: no motion
    g16 = vectors_from_side_data(mvs, 32, 32, 16)  # each 16px block takes the partition at its centre pixel
    assert g16.shape == (2, 2, 2) and (g16[0, 1] == (-1, 2)).all() and (g16[0, 0] == 0).all()


def test_preview_colour_wheel():
    vec = torch.zeros((2, 2, 3, 2), dtype=torch.int16)
    vec[0, 0, 0] = torch.tensor([5, 0])
    vec[0, 0, 1] = torch.tensor([-5, 0])
    mv = MotionVectors(vec, 8, (16, 20), "test", 5)
    pic = motion_preview(mv)
    assert pic.shape == (2, 16, 20, 3) and pic.dtype == torch.float32
    assert pic[1].max() == 0  # no motion is black
    right, left = pic[0, 0, 0], pic[0, 0, 8]
    assert right.max() == 1.0 and left.max() == 1.0 and not torch.equal(right, left)


def test_bad_inputs_raise_clear_errors():
    clip = load_clip("car-detection.mp4", 3, start=10, crop=(0, 0, 48, 64))
    with pytest.raises(ValueError, match="at least 2 frames"):
        encode(clip[:1])
    with pytest.raises(ValueError, match=r"larger than the frame \(12x12\): choose 4 or 8 .* at least 16x16 pixels"):
        encode(clip[:, :12, :12], block_size=16)
    for size in (2, 3):  # below the smallest block: no size fits, and the message says what frame size would
        with pytest.raises(ValueError, match=rf"\({size}x{size}\): .*\(4, 8, 16\).* at least 4x4 pixels \(16x16") as e:
            encode(clip[:, :size, :size], block_size=16)
        assert "<= " not in str(e.value)
    with pytest.raises(ValueError, match="search_range"):
        encode(clip, search_range=0)
    with pytest.raises(ValueError, match="block_size"):
        encode(clip, block_size=12)
    with pytest.raises(ValueError, match=r"uint8 \(8-bit\) or float32, got torch.float64"):
        encode(clip.double())
    with pytest.raises(ValueError, match="mixed frame sizes"):
        list(encode_pairs([clip[0], clip[1, :32]]))
    mv, res = encode(clip, 16, 4)
    with pytest.raises(ValueError, match="measured on 64x48"):
        decode(clip[0, :32], mv)
    with pytest.raises(ValueError, match="non-empty"):
        decode(clip[0], mv, res[:0])
    with pytest.raises(ValueError, match="one residual per frame"):
        decode(clip[0], mv, res[:1])
    with pytest.raises(ValueError, match="finite"):
        decode(clip[0], mv, res, residual_scale=float("nan"))
    with pytest.raises(ValueError, match="vector grid"):
        MotionVectors(mv.vectors, 8, (48, 64), "x", 4)


def test_torch_backend_the_gpu_path_round_trips_and_matches_the_cpu_path():
    """backend="torch" runs the code path that GPUs use (here on the CPU, small frames)."""
    clip = load_clip("car-detection.mp4", 3, start=200, crop=(220, 300, 40, 56))
    mv_t, res_t = encode(clip, 8, 4, "exhaustive", backend="torch")
    mv_c, res_c = encode(clip, 8, 4, "exhaustive")
    assert torch.equal(mv_t.vectors, mv_c.vectors) and torch.equal(res_t, res_c)
    assert torch.equal(decode(clip[0], mv_t, res_t, backend="torch"), clip)
    assert torch.equal(decode(clip[0], mv_t, res_t, 0.5, backend="torch"), decode(clip[0], mv_c, res_c, 0.5))


def test_two_threads_give_the_same_result_as_the_sequential_pair_stream():
    clip = load_clip("vid_h264.mp4", 6, start=80, crop=(200, 400, 96, 160))
    mv, res = encode(clip, 16, 8, "fast", threads=2)
    pairs = list(encode_pairs(iter(clip), 16, 8, "fast"))
    assert torch.equal(mv.vectors, torch.stack([v for v, _ in pairs]))
    assert torch.equal(res, torch.stack([r for _, r in pairs]))
    assert torch.equal(encode(clip, 16, 8, "fast", threads=1)[0].vectors, mv.vectors)


@pytest.mark.parametrize("method", ["fast", "exhaustive", "torch"])
def test_ties_go_to_the_shortest_vector(method):
    """Flat and periodic static content: many shifts have SAD 0, the zero vector must win (no spurious motion)."""
    frame = np.full((48, 64), 90, np.uint8)
    frame[:, ::4] = 200  # vertical stripes with period 4: shifts (4k, dy) all match exactly
    if method == "torch":
        vec = torch_ops.exhaustive_search(torch.from_numpy(frame), torch.from_numpy(frame), 16, 8).numpy()
    else:
        search = blockmatch.fast_search if method == "fast" else blockmatch.exhaustive_search
        vec = search(frame, frame, 16, 8)
    assert (vec == 0).all()
    # stripes moved by 1 px: candidates (-1 + 4k, dy) tie; the shortest, (-1, 0), wins
    moved = np.roll(frame, 1, axis=1)  # moved[y, x] = frame[y, x - 1]
    if method == "torch":
        vec = torch_ops.exhaustive_search(torch.from_numpy(moved), torch.from_numpy(frame), 16, 8).numpy()
    else:
        vec = search(moved, frame, 16, 8)
    assert (vec[:, 1:] == (-1, 0)).all()  # the first block column sees the clamped left border


def test_stacked_shift_sads_match_per_shift_sums_in_every_chunking(monkeypatch):
    """sad_shifts sums several difference images with one integral; every chunking gives the plain per-shift SADs."""
    clip = load_clip("car-detection.mp4", 2, start=100, crop=(150, 200, 40, 56))
    cur = blockmatch.pad_to_grid(blockmatch.luma_u8(clip[1].numpy()), 8)
    ref_pad = blockmatch.pad_reference(blockmatch.luma_u8(clip[0].numpy()), 8, 3)
    shifts = blockmatch.shift_order(3)  # 49 shifts
    hb, wb = cur.shape[0] // 8, cur.shape[1] // 8
    expected = np.zeros((len(shifts), hb, wb), np.int64)
    for n, (dx, dy) in enumerate(shifts):
        diff = np.abs(ref_pad[3 + dy:3 + dy + cur.shape[0], 3 + dx:3 + dx + cur.shape[1]].astype(np.int64) - cur)
        expected[n] = diff.reshape(hb, 8, wb, 8).sum((1, 3))
    # one image per integral, chunks of 5 (the last one partial), chunks of 7, all 49 at once
    for pixels in (1, cur.size * 5, cur.size * 7 + 1, 1 << 20):
        monkeypatch.setattr(blockmatch, "STACK_PIXELS", pixels)
        assert (blockmatch.sad_shifts(cur, ref_pad, 3, 8, shifts) == expected).all()


def test_gather_blocks_and_refining_selected_blocks_match_the_whole_grid():
    clip = load_clip("vid_h264.mp4", 2, start=80, crop=(200, 400, 64, 96))
    block, margin, hb, wb = 16, 6, 4, 6
    vec = np.random.default_rng(0).integers(-4, 5, (hb, wb, 2)).astype(np.int32)
    for ref in (blockmatch.luma_u8(clip[0].numpy()), clip[0].numpy()):  # luma and RGB
        ref_pad = blockmatch.pad_reference(ref, block, margin)
        mosaic = blockmatch.gather_blocks(ref_pad, margin, block, vec, extra=1)
        for i, j in itertools.product(range(hb), range(wb)):
            y, x = margin + i * block + vec[i, j, 1] - 1, margin + j * block + vec[i, j, 0] - 1
            assert np.array_equal(mosaic[i * 18:(i + 1) * 18, j * 18:(j + 1) * 18], ref_pad[y:y + 18, x:x + 18])
    ref_pad = blockmatch.pad_reference(blockmatch.luma_u8(clip[0].numpy()), block, margin)
    cur = blockmatch.pad_to_grid(blockmatch.luma_u8(clip[1].numpy()), block)
    cur_blocks = np.ascontiguousarray(cur.reshape(hb, block, wb, block).transpose(0, 2, 1, 3))
    best = np.full((hb, wb), 123456, np.int32)
    dense_vec, dense_best, _ = blockmatch._refine(cur, ref_pad, margin, block, vec, 1, 4)
    for picked in ([0, 3, 7, 8, 15, 22, 23], list(range(hb * wb)), []):  # 7 blocks: the last mosaic row is padded
        select = np.zeros((hb, wb), bool)
        select.flat[picked] = True
        got_vec, got_best = blockmatch._refine_blocks(cur_blocks, ref_pad, margin, block, vec, best, select, 4)
        assert (got_vec[select] == dense_vec[select]).all() and (got_best[select] == dense_best[select]).all()
        assert (got_vec[~select] == vec[~select]).all() and (got_best[~select] == best[~select]).all()


def test_fast_search_final_refinement_of_selected_blocks_equals_a_pass_over_all_blocks(monkeypatch):
    """Step 4 refines only the blocks moved since the level-0 refinement; on real frames a pass over every block
    gives the same vectors and SADs."""
    real, calls = blockmatch._refine_blocks, []

    def both(cur_blocks, ref_pad, margin, block, vec, best, select, limit):
        got = real(cur_blocks, ref_pad, margin, block, vec, best, select, limit)
        dense = real(cur_blocks, ref_pad, margin, block, vec, best, np.ones_like(select), limit)
        calls.append((select.mean(), all(np.array_equal(a, b) for a, b in zip(got, dense, strict=False))))
        return got

    monkeypatch.setattr(blockmatch, "_refine_blocks", both)
    clip = load_clip("car-detection.mp4", 4, start=100, crop=(100, 100, 160, 256))
    luma = [blockmatch.luma_u8(f.numpy()) for f in clip]
    for block in (16, 8):
        for k in range(3):
            blockmatch.fast_search(luma[k + 1], luma[k], block, 16)
    assert calls and all(same for _, same in calls)
    assert min(frac for frac, _ in calls) < 1  # the selection did skip blocks
