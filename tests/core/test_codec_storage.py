"""Motion vectors in .safetensors files (codec/storage.py): a bit-exact round trip of vectors, residuals and header
on a real clip, and refusal of damaged, foreign, inconsistent and unknown-version files with messages that say so."""
import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import TEST_DATA
from vcut.bench.clips import read_frames
from vcut.codec import (FORMAT_VERSION, MotionFileError, MotionVectors, decode, encode, load_motion_vectors,
                        save_motion_vectors)


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

    rewrite_header(good, tmp_path / "v2.safetensors", lambda h: h["__metadata__"].update(format_version="2"))
    with pytest.raises(MotionFileError, match="format version 2 .*reads format version 1 only; update the pack"):
        load_motion_vectors(tmp_path / "v2.safetensors")
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
    with pytest.raises(ValueError, match="MotionVectors"):
        save_motion_vectors(tmp_path / "x.safetensors", motion.vectors)
    assert not (tmp_path / "x.safetensors").exists()
    odd = MotionVectors(motion.vectors, 8, (70, 100), "x264:medium", 5, {"partitions": np.int64(4)})
    save_motion_vectors(tmp_path / "odd.safetensors", odd)  # an info value JSON cannot hold is kept as text
    assert load_motion_vectors(tmp_path / "odd.safetensors")[0].info == {"partitions": "4"}
