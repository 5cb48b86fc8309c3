"""Motion vectors in .safetensors files (codec/storage.py): a bit-exact round trip of vectors, residuals and header
on a real clip, and refusal of damaged, foreign, inconsistent and unknown-version files with messages that say so."""
import hashlib
import json
import os
import struct
import threading

import numpy as np
import pytest
import torch
from conftest import TEST_DATA
from safetensors.torch import save_file

from vcut.bench.clips import read_frames
from vcut.codec import (
    FORMAT_VERSION,
    MotionFileError,
    MotionVectors,
    decode,
    encode,
    load_motion_vectors,
    motion_preview,
    save_motion_vectors,
    storage,
)
from vcut.codec.storage import _digest, list_motion_files
from vcut.codec.visualize import PREVIEW_MAX_FRAMES


@pytest.fixture(scope="module")
def encoded():
    """A real clip crop (sizes not divisible by the block: the padded grid) encoded with 8px blocks."""
    frames = torch.from_numpy(np.ascontiguousarray(read_frames(TEST_DATA / "video" / "vid_h264.mp4", 5, 150)
                                                   [:, 40:110, 60:160]))
    motion, residual = encode(frames, block_size=8, search_range=8)
    return frames, motion, residual


def test_round_trip_is_bit_exact_with_metadata(tmp_path, encoded):
    frames, motion, residual = encoded
    path = tmp_path / "mv.safetensors"
    header = save_motion_vectors(path, motion, residual, pack_version="9.9.9")
    loaded, loaded_residual, metadata = load_motion_vectors(path)
    assert metadata == header
    assert loaded.vectors.dtype == torch.int16 and torch.equal(loaded.vectors, motion.vectors)
    assert torch.equal(loaded_residual, residual) and loaded_residual.dtype == torch.int16
    assert (loaded.block_size, loaded.frame_size, loaded.source, loaded.search_range) == \
        (8, (70, 100), "search:fast", 8) == (motion.block_size, motion.frame_size, motion.source, motion.search_range)
    assert metadata["format"] == "vcut.motion_vectors" and metadata["format_version"] == str(FORMAT_VERSION)
    assert metadata["pack_version"] == "9.9.9" and metadata["frames"] == "5"
    assert torch.equal(decode(frames[0], loaded, loaded_residual), frames)  # same frames as before saving
    # without the residual: the motion-only decode is unchanged too
    save_motion_vectors(tmp_path / "only.safetensors", motion)
    alone, none, meta = load_motion_vectors(tmp_path / "only.safetensors")
    assert none is None and meta["has_residual"] == "0"
    assert torch.equal(decode(frames[0], alone), decode(frames[0], motion))
    assert path.read_bytes()[8:9] == b"{"  # safetensors: a length, a JSON header, raw tensor bytes (no pickle)


def rewrite_header(src, dst, change):
    """Copy a safetensors file with its JSON header edited by `change(header_dict)`."""
    data = src.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    change(header)
    text = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size:])


def test_damaged_foreign_and_unknown_files_are_refused(tmp_path, encoded):
    frames, motion, residual = encoded
    good = tmp_path / "good.safetensors"
    save_motion_vectors(good, motion, residual)
    data = good.read_bytes()

    (tmp_path / "truncated.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(MotionFileError, match="not a readable .safetensors file"):
        load_motion_vectors(tmp_path / "truncated.safetensors")
    (tmp_path / "photo.safetensors").write_bytes((TEST_DATA / "photos" / "coffee.png").read_bytes())
    with pytest.raises(MotionFileError, match="not a readable .safetensors file"):
        load_motion_vectors(tmp_path / "photo.safetensors")
    flipped = bytearray(data)
    flipped[-5] ^= 0x40  # one bit of residual data: safetensors alone would not notice
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(MotionFileError, match="does not match the checksum"):
        load_motion_vectors(tmp_path / "flipped.safetensors")

    save_file({"latent_tensor": torch.zeros(1, 4, 8, 8)}, str(tmp_path / "latent.safetensors"))
    with pytest.raises(MotionFileError, match="not a vcut motion-vector file .no format entry"):
        load_motion_vectors(tmp_path / "latent.safetensors")
    save_file({"vectors": motion.vectors}, str(tmp_path / "other.safetensors"), metadata={"format": "other"})
    with pytest.raises(MotionFileError, match="format 'other'"):
        load_motion_vectors(tmp_path / "other.safetensors")

    rewrite_header(good, tmp_path / "v3.safetensors", lambda h: h["__metadata__"].update(format_version="3"))
    with pytest.raises(MotionFileError, match="format version 3 .*reads format versions 1, 2; update the pack"):
        load_motion_vectors(tmp_path / "v3.safetensors")
    rewrite_header(good, tmp_path / "size.safetensors", lambda h: h["__metadata__"].update(frame_width="64"))
    with pytest.raises(MotionFileError, match="inconsistent contents: vector grid"):
        load_motion_vectors(tmp_path / "size.safetensors")
    rewrite_header(good, tmp_path / "frames.safetensors", lambda h: h["__metadata__"].update(frames="9"))
    with pytest.raises(MotionFileError, match="says 9 frames but the vectors describe 5"):
        load_motion_vectors(tmp_path / "frames.safetensors")
    rewrite_header(good, tmp_path / "nosize.safetensors", lambda h: h["__metadata__"].pop("block_size"))
    with pytest.raises(MotionFileError, match="no 'block_size'"):
        load_motion_vectors(tmp_path / "nosize.safetensors")
    with pytest.raises(MotionFileError, match="no such file"):
        load_motion_vectors(tmp_path / "missing.safetensors")


def test_save_validates_what_it_writes(tmp_path, encoded):
    _, motion, residual = encoded
    with pytest.raises(ValueError, match="one residual per frame pair"):
        save_motion_vectors(tmp_path / "x.safetensors", motion, residual[:2])
    with pytest.raises(ValueError, match="int16"):
        save_motion_vectors(tmp_path / "x.safetensors", motion, residual.float())
    with pytest.raises(ValueError, match="must be an torch.int16 tensor .* for uint8-precision"):
        save_motion_vectors(tmp_path / "x.safetensors", motion, residual.int())
    with pytest.raises(ValueError, match="MotionVectors"):
        save_motion_vectors(tmp_path / "x.safetensors", motion.vectors)
    assert not (tmp_path / "x.safetensors").exists()
    odd = MotionVectors(motion.vectors, 8, (70, 100), "x264:medium", 5, {"partitions": np.int64(4)})
    save_motion_vectors(tmp_path / "odd.safetensors", odd)  # an info value JSON cannot hold is kept as text
    assert load_motion_vectors(tmp_path / "odd.safetensors")[0].info == {"partitions": "4"}


def test_float32_precision_round_trip_is_bit_exact(tmp_path, encoded):
    frames = encoded[0].float().div_(255.0).add_(1e-4)  # off the 8-bit grid
    frames[0, 0, 0, 0] = -0.0
    motion, residual = encode(frames, block_size=8, search_range=8)
    header = save_motion_vectors(tmp_path / "f.safetensors", motion, residual)
    assert header["precision"] == "float32" and header["format_version"] == "2"
    loaded, loaded_residual, _ = load_motion_vectors(tmp_path / "f.safetensors")
    assert loaded.precision == "float32" and loaded_residual.dtype == torch.int32
    assert torch.equal(loaded_residual, residual)
    assert torch.equal(decode(frames[0], loaded, loaded_residual).view(torch.int32), frames.view(torch.int32))
    assert save_motion_vectors(tmp_path / "u.safetensors", *encoded[1:])["precision"] == "uint8"


def write_version_1(path, motion, residual):
    """The writer of format version 1 (vcut before precisions): the same tensors and digest, a header without
    `precision`, format_version 1, int16 residuals."""
    tensors = {"vectors": motion.vectors.contiguous(), "residual": residual.contiguous()}
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    height, width = motion.frame_size
    save_file(tensors, str(path), metadata={
        "format": "vcut.motion_vectors", "format_version": "1", "pack_version": "0.9.0",
        "block_size": str(motion.block_size), "frame_height": str(height), "frame_width": str(width),
        "frames": str(motion.num_frames), "source": motion.source, "search_range": str(motion.search_range),
        "has_residual": "1", "info": "{}", "sha256": h.hexdigest()})


def test_version_1_files_still_load_and_decode(tmp_path, encoded):
    frames, motion, residual = encoded
    write_version_1(tmp_path / "v1.safetensors", motion, residual)
    loaded, loaded_residual, header = load_motion_vectors(tmp_path / "v1.safetensors")
    assert header["format_version"] == "1" and "precision" not in header
    assert loaded.precision == "uint8" and torch.equal(loaded_residual, residual)
    assert torch.equal(decode(frames[0], loaded, loaded_residual), frames)


def motion_only_file(path, pairs, height, width, block=16, metadata=None, vectors=None):
    """A motion-only file as Save Motion Vectors writes it (zero vectors), with header entries changed."""
    if vectors is None:
        vectors = torch.zeros((pairs, -(-height // block), -(-width // block), 2), dtype=torch.int16)
    meta = {"format": "vcut.motion_vectors", "format_version": "2", "block_size": str(block),
            "frame_height": str(height), "frame_width": str(width), "frames": str(pairs + 1), "source": "x",
            "search_range": "4", "precision": "uint8", "has_residual": "0", "info": "{}",
            "sha256": _digest({"vectors": vectors})}
    meta.update(metadata or {})
    save_file({"vectors": vectors}, str(path), metadata=meta)
    return path


def test_hostile_headers_are_refused_before_allocating_with_the_file_named(tmp_path):
    # a few MB of vectors describing 4 frames of 16384 x 12000: 9 GB to decode (today: loaded, then a full-size zero
    # residual and preview were built from it)
    big = motion_only_file(tmp_path / "big.safetensors", 3, 12000, 16384)
    assert big.stat().st_size < 12 << 20
    with pytest.raises(MotionFileError, match=r"big.safetensors: describes 4 frames of 16384x12000, which would need "
                                              r"\d+ MiB to load and 9000 MiB to decode; motion files are limited "
                                              r"to 4096 MiB"):
        load_motion_vectors(big)
    cases = {  # name: (file, message); each raised TypeError / RecursionError / nothing before
        "list_info": (dict(metadata={"info": "[1, 2]"}), "the header's 'info' is a JSON list; expected an object"),
        "deep_info": (dict(metadata={"info": "[" * 100000 + "]" * 100000}),
                      "the header's 'info' is not valid JSON .nested too deeply"),
        "zero_pairs": (dict(pairs=0), "holds 0 frame pairs"),
        "zero_height": (dict(height=0), "frame size 8x0 is not 1..16384 pixels each way"),
        "too_wide": (dict(width=20000, height=1), "frame size 20000x1 is not 1..16384"),
        "bad_precision": (dict(metadata={"precision": "float16"}), "precision is 'float16'"),
    }
    for name, (change, message) in cases.items():
        args = {"pairs": 2, "height": 8, "width": 8, "block": 4, **change}
        path = motion_only_file(tmp_path / f"{name}.safetensors", **args)
        with pytest.raises(MotionFileError, match=f"{name}.safetensors: .*{message}"):
            load_motion_vectors(path)
    # residual of the other precision's dtype: named, before reading it
    vec = torch.zeros((1, 2, 2, 2), dtype=torch.int16)
    res = torch.zeros((1, 8, 8, 3), dtype=torch.int32)
    save_file({"vectors": vec, "residual": res}, str(tmp_path / "mixed.safetensors"), metadata={
        "format": "vcut.motion_vectors", "format_version": "2", "block_size": "4", "frame_height": "8",
        "frame_width": "8", "frames": "2", "source": "x", "search_range": "4", "precision": "uint8",
        "has_residual": "1", "info": "{}", "sha256": _digest({"vectors": vec, "residual": res})})
    with pytest.raises(MotionFileError, match=r"mixed.safetensors: 'residual' is I32 \[1, 8, 8, 3\]; "
                                              r"uint8-precision motion vectors need I16"):
        load_motion_vectors(tmp_path / "mixed.safetensors")


def test_thousands_of_tiny_pairs_load_and_the_preview_is_capped(tmp_path):
    pairs = 2000  # thousands of tiny pairs: one preview picture each was written before
    path = motion_only_file(tmp_path / "many.safetensors", pairs, 8, 8, block=4)
    motion, residual, _ = load_motion_vectors(path)
    assert residual is None and motion.num_frames == pairs + 1
    assert motion_preview(motion).shape == (PREVIEW_MAX_FRAMES, 8, 8, 3)
    wide = MotionVectors(torch.zeros((1, 150, 750, 2), dtype=torch.int16), 16, (2400, 12000), "x", 4)
    assert motion_preview(wide).shape == (1, 200, 1000, 3)  # shrunk by a whole factor to <= 1024 on the long side


def test_listing_follows_links_once_and_is_bounded(tmp_path, monkeypatch):
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    for name in ("a.safetensors", "sub/b.safetensors", "sub/.hidden/c.safetensors", "sub/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(".", tmp_path / "loop1")  # the loops that froze the server
    os.symlink(".", tmp_path / "loop2")
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "back")
    os.symlink(tmp_path / "missing", tmp_path / "dangling.safetensors")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "d.safetensors").write_bytes(b"x")
    os.symlink(outside, tmp_path / "linked")  # a linked folder elsewhere: followed, as LoadImage follows links
    found = []
    worker = threading.Thread(target=lambda: found.append(list_motion_files(tmp_path)), daemon=True)
    worker.start()
    worker.join(20)
    assert found == [["a.safetensors", "linked/d.safetensors", "sub/b.safetensors"]]
    deep = tmp_path / "deep"
    (deep / "/".join("abcdefghij")).mkdir(parents=True)
    (deep / "a" / "b" / "top.safetensors").write_bytes(b"x")
    (deep / "/".join("abcdefghij") / "bottom.safetensors").write_bytes(b"x")
    assert list_motion_files(deep) == ["a/b/top.safetensors"]  # at most LIST_MAX_DEPTH folders down
    monkeypatch.setattr(storage, "LIST_MAX_FILES", 2)
    assert len(list_motion_files(tmp_path)) == 2
