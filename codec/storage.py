"""MOTION_VECTORS (and optionally the residuals) in a .safetensors file, and back.

The file holds two tensors, `vectors` (int16 [T-1, Hb, Wb, 2]) and optionally `residual` (int16 [T-1, H, W, C] in
[-255, 255]), and a header with what a MotionVectors carries: block size, frame size, source, search range, plus the
pack version, the format name and version, and a SHA-256 of the tensor bytes (safetensors itself checks the header
and the sizes, not the data). safetensors never unpickles anything, so a file from anywhere is safe to open; a file
that is not ours, of an unknown format version, damaged or inconsistent is refused with a message saying which.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .types import MotionVectors

FORMAT = "vcut.motion_vectors"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


class MotionFileError(ValueError):
    """A file that cannot be read as motion vectors; the message says why and what would be valid."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_residual(residual: torch.Tensor, motion: MotionVectors, name: str = "residual") -> None:
    """int16 [frame pairs, H, W, 1 or 3] in [-255, 255], matching the vectors' frame pairs and frame size."""
    h, w = motion.frame_size
    pairs = motion.vectors.shape[0]
    if not isinstance(residual, torch.Tensor) or residual.dtype != torch.int16 or residual.ndim != 4:
        raise ValueError(f"{name} must be an int16 tensor [frame pairs, height, width, channels]")
    if tuple(residual.shape[:3]) != (pairs, h, w) or residual.shape[3] not in (1, 3):
        raise ValueError(f"{name} has shape {tuple(residual.shape)} but the motion vectors need "
                         f"({pairs}, {h}, {w}, 1 or 3): one residual per frame pair, at the vectors' frame size")
    if residual.numel() and (int(residual.min()) < -255 or int(residual.max()) > 255):
        raise ValueError(f"{name} values must lie in -255..255")


def save_motion_vectors(path: str | os.PathLike, motion: MotionVectors, residual: torch.Tensor | None = None,
                        pack_version: str = "") -> dict[str, str]:
    """Write `motion` (and `residual`, int16 as residuals_for / encode return it) to `path`; returns the header."""
    if not isinstance(motion, MotionVectors):
        raise ValueError("motion must be a MotionVectors (MOTION_VECTORS from Motion Vector Encode)")
    tensors = {"vectors": motion.vectors.detach().cpu().contiguous()}
    if residual is not None:
        residual = residual.detach().cpu().contiguous()
        check_residual(residual, motion)
        tensors["residual"] = residual
    h, w = motion.frame_size
    try:
        info = json.dumps(motion.info)
    except (TypeError, ValueError):
        info = json.dumps({k: str(v) for k, v in motion.info.items()})
    metadata = {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "pack_version": str(pack_version),
        "block_size": str(motion.block_size), "frame_height": str(h), "frame_width": str(w),
        "frames": str(motion.num_frames), "source": str(motion.source), "search_range": str(motion.search_range),
        "has_residual": "1" if residual is not None else "0", "info": info, "sha256": _digest(tensors),
    }
    save_file(tensors, str(path), metadata=metadata)
    return metadata


def _int(metadata: dict, key: str, path) -> int:
    try:
        return int(metadata[key])
    except KeyError:
        raise MotionFileError(f"{path}: the header has no '{key}' (a damaged or hand-made file)")
    except ValueError:
        raise MotionFileError(f"{path}: the header's '{key}' is {metadata[key]!r}, not a whole number")


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata of a motion-vector file, checked for our format name and version."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MotionFileError(f"{path}: no such file")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise MotionFileError(f"{path} is not a readable .safetensors file ({error}); it is damaged or not a "
                              "motion-vector file (save one with Save Motion Vectors)") from None
    if metadata.get("format") != FORMAT:
        found = f"format {metadata['format']!r}" if "format" in metadata else "no format entry in its header"
        raise MotionFileError(f"{path} is a safetensors file but not a vcut motion-vector file ({found}; expected "
                              f"{FORMAT!r}): a model or latent file? Save one with Save Motion Vectors")
    version = _int(metadata, "format_version", path)
    if version != FORMAT_VERSION:
        hint = "; update the pack to read it" if version > FORMAT_VERSION else ""
        raise MotionFileError(f"{path} has motion-vector format version {version} (written by vcut "
                              f"{metadata.get('pack_version') or '?'}); this vcut reads format version "
                              f"{FORMAT_VERSION} only{hint}")
    return metadata


def load_motion_vectors(path: str | os.PathLike) -> tuple[MotionVectors, torch.Tensor | None, dict[str, str]]:
    """(MotionVectors, int16 residual or None, header) from a file written by save_motion_vectors; raises
    MotionFileError for a foreign, damaged, inconsistent or unknown-version file."""
    metadata = read_header(path)
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            names = set(f.keys())
            if "vectors" not in names or not names <= {"vectors", "residual"}:
                raise MotionFileError(f"{path} holds tensors {sorted(names)}; a motion-vector file holds 'vectors' "
                                      "and optionally 'residual'")
            tensors = {name: f.get_tensor(name) for name in names}
    except (SafetensorError, OSError) as error:
        raise MotionFileError(f"{path}: its tensor data cannot be read ({error}); the file is damaged") from None
    if metadata.get("sha256") != _digest(tensors):
        raise MotionFileError(f"{path}: its data does not match the checksum in its header; the file is damaged "
                              "(save it again)")
    h, w = _int(metadata, "frame_height", path), _int(metadata, "frame_width", path)
    vectors = tensors["vectors"]
    try:
        motion = MotionVectors(vectors, _int(metadata, "block_size", path), (h, w), metadata.get("source", ""),
                               _int(metadata, "search_range", path), json.loads(metadata.get("info") or "{}"))
    except (ValueError, TypeError) as error:
        raise MotionFileError(f"{path}: inconsistent contents: {error}") from None
    if _int(metadata, "frames", path) != motion.num_frames:
        raise MotionFileError(f"{path}: the header says {metadata['frames']} frames but the vectors describe "
                              f"{motion.num_frames}")
    residual = tensors.get("residual")
    if residual is not None:
        try:
            check_residual(residual, motion)
        except ValueError as error:
            raise MotionFileError(f"{path}: {error}") from None
    return motion, residual, metadata
