"""MOTION_VECTORS (and optionally the residuals) in a .safetensors file, and back.

The file holds two tensors, `vectors` (int16 [T-1, Hb, Wb, 2]) and optionally `residual` ([T-1, H, W, C]: int16 in
[-255, 255] for precision "uint8", int32 float32-bit differences for precision "float32", see codec.types), and a
header with what a MotionVectors carries: block size, frame size, source, search range, precision, plus the pack
version, the format name and version, and a SHA-256 of the tensor bytes (safetensors itself checks the header and
the sizes, not the data). safetensors never unpickles anything, so a file from anywhere is safe to open; a file
that is not ours, of an unknown format version, damaged or inconsistent is refused with a message saying which.

Format versions: 2 (this one) adds the `precision` entry and int32 residuals; 1 (vcut before precision existed:
no `precision` entry, int16 residuals) still loads, as precision "uint8".

Hostile files: before any tensor is read, the shapes and dtypes the safetensors header declares are checked
against the motion header (frame size, block size, frames, precision) and the memory the file would take to load
and to decode (``memory_needed``) against MEMORY_BUDGET; a file describing more is refused with the sizes named.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .blockmatch import grid_size
from .types import PRECISIONS, MotionVectors
from .visualize import preview_shape

FORMAT = "vcut.motion_vectors"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".safetensors"
MEMORY_BUDGET = 4 << 30  # bytes a loaded file may need, to load (tensors, residual IMAGE, preview) or to decode
MAX_SIDE = 16384  # frame height / width, ComfyUI's MAX_RESOLUTION
RESIDUAL_DTYPES = {"uint8": torch.int16, "float32": torch.int32}
_SAFETENSORS_DTYPES = {torch.int16: "I16", torch.int32: "I32"}
LIST_MAX_DEPTH, LIST_MAX_FOLDERS, LIST_MAX_FILES = 8, 1000, 10000  # bounds of the input-folder listing

log = logging.getLogger("vcut")


class MotionFileError(ValueError):
    """A file that cannot be read as motion vectors; the message says why and what would be valid."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes and bytes, in name order (hashed in place, no copy)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().data)
    return h.hexdigest()


def check_residual(residual: torch.Tensor, motion: MotionVectors, name: str = "residual") -> None:
    """[frame pairs, H, W, 1 or 3] matching the vectors, int16 in [-255, 255] (precision "uint8") or int32
    (precision "float32")."""
    h, w = motion.frame_size
    pairs = motion.vectors.shape[0]
    dtype = RESIDUAL_DTYPES[motion.precision]
    if not isinstance(residual, torch.Tensor) or residual.dtype != dtype or residual.ndim != 4:
        raise ValueError(f"{name} must be an {dtype} tensor [frame pairs, height, width, channels] for "
                         f"{motion.precision}-precision motion vectors")
    if tuple(residual.shape[:3]) != (pairs, h, w) or residual.shape[3] not in (1, 3):
        raise ValueError(f"{name} has shape {tuple(residual.shape)} but the motion vectors need "
                         f"({pairs}, {h}, {w}, 1 or 3): one residual per frame pair, at the vectors' frame size")
    if dtype == torch.int16 and residual.numel() and (int(residual.min()) < -255 or int(residual.max()) > 255):
        raise ValueError(f"{name} values must lie in -255..255")


def save_motion_vectors(path: str | os.PathLike, motion: MotionVectors, residual: torch.Tensor | None = None,
                        pack_version: str = "") -> dict[str, str]:
    """Write `motion` (and `residual`, as residuals_for / encode return it) to `path`; returns the header."""
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
        "precision": motion.precision, "has_residual": "1" if residual is not None else "0", "info": info,
        "sha256": _digest(tensors),
    }
    save_file(tensors, str(path), metadata=metadata)
    return metadata


def _int(metadata: dict, key: str, path) -> int:
    try:
        return int(metadata[key])
    except KeyError:
        raise MotionFileError(f"{path}: the header has no '{key}' (a damaged or hand-made file)") from None
    except ValueError:
        raise MotionFileError(f"{path}: the header's '{key}' is {metadata[key]!r}, not a whole number") from None


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
    if version not in READABLE_VERSIONS:
        hint = "; update the pack to read it" if version > FORMAT_VERSION else ""
        raise MotionFileError(f"{path} has motion-vector format version {version} (written by vcut "
                              f"{metadata.get('pack_version') or '?'}); this vcut reads format versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}{hint}")
    return metadata


def header_precision(metadata: dict[str, str], path) -> str:
    """The precision a header declares: its `precision` entry (format 2), "uint8" for format 1 files."""
    if _int(metadata, "format_version", path) == 1:
        return "uint8"
    precision = metadata.get("precision")
    if precision not in PRECISIONS:
        raise MotionFileError(f"{path}: the header's precision is {precision!r}; expected one of {PRECISIONS}")
    return precision


def memory_needed(pairs: int, height: int, width: int, channels: int, precision: str,
                  has_residual: bool) -> tuple[int, int]:
    """(bytes to load, bytes to decode) a file describing `pairs` frame pairs of height x width x channels.
    Load: the vectors and residual tensors, the residual IMAGE (float32 or float64 per value) and the preview
    (codec.visualize caps it); decode: the decoded IMAGE (float32, pairs + 1 frames)."""
    hb, wb = grid_size(height, width, 4)  # the finest grid: an upper bound for any block size
    values = pairs * height * width * channels
    load = pairs * hb * wb * 2 * 2
    if has_residual:
        load += values * RESIDUAL_DTYPES[precision].itemsize + values * (8 if precision == "float32" else 4)
    frames, ph, pw = preview_shape(pairs, height, width)
    load += frames * ph * pw * 3 * 4
    return load, (pairs + 1) * height * width * channels * 4


def _check_layout(f, metadata: dict[str, str], path: str) -> tuple[int, int, int, str]:
    """(pairs, height, width, precision) after checking the tensors the safetensors header declares (names, dtypes,
    shapes) against the motion header and the memory budget; nothing is read or allocated yet."""
    names = set(f.keys())
    if "vectors" not in names or not names <= {"vectors", "residual"}:
        raise MotionFileError(f"{path} holds tensors {sorted(names)}; a motion-vector file holds 'vectors' "
                              "and optionally 'residual'")
    h, w = _int(metadata, "frame_height", path), _int(metadata, "frame_width", path)
    block = _int(metadata, "block_size", path)
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise MotionFileError(f"{path}: the header's frame size {w}x{h} is not 1..{MAX_SIDE} pixels each way")
    precision = header_precision(metadata, path)
    vectors = f.get_slice("vectors")
    shape = list(vectors.get_shape())
    if vectors.get_dtype() != "I16" or len(shape) != 4 or shape[3] != 2:
        raise MotionFileError(f"{path}: 'vectors' is {vectors.get_dtype()} {shape}; expected int16 "
                              "[frame pairs, Hb, Wb, 2]")
    pairs = shape[0]
    if pairs == 0:
        raise MotionFileError(f"{path}: holds 0 frame pairs; a motion-vector file describes at least 2 frames")
    if block in (4, 8, 16) and shape[1:3] != list(grid_size(h, w, block)):
        raise MotionFileError(f"{path}: inconsistent contents: vector grid {tuple(shape[1:3])} does not match "
                              f"frame size {h}x{w} with {block}px blocks (expected {grid_size(h, w, block)})")
    frames = _int(metadata, "frames", path)
    if frames != pairs + 1:
        raise MotionFileError(f"{path}: the header says {frames} frames but the vectors describe {pairs + 1}")
    channels = 3
    if "residual" in names:
        residual = f.get_slice("residual")
        rshape, expect = list(residual.get_shape()), _SAFETENSORS_DTYPES[RESIDUAL_DTYPES[precision]]
        if residual.get_dtype() != expect or len(rshape) != 4 or rshape[:3] != [pairs, h, w] \
                or rshape[3] not in (1, 3):
            raise MotionFileError(f"{path}: 'residual' is {residual.get_dtype()} {rshape}; {precision}-precision "
                                  f"motion vectors need {expect} [{pairs}, {h}, {w}, 1 or 3]")
        channels = rshape[3]
    load, decoded = memory_needed(pairs, h, w, channels, precision, "residual" in names)
    if max(load, decoded) > MEMORY_BUDGET:
        raise MotionFileError(f"{path}: describes {pairs + 1} frames of {w}x{h}, which would need "
                              f"{load / 2 ** 20:.0f} MiB to load and {decoded / 2 ** 20:.0f} MiB to decode; "
                              f"motion files are limited to {MEMORY_BUDGET / 2 ** 20:.0f} MiB each (a hostile or "
                              "oversized file: split the video into shorter parts)")
    return pairs, h, w, precision


def _info(metadata: dict[str, str], path: str) -> dict:
    try:
        info = json.loads(metadata.get("info") or "{}")
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise MotionFileError(f"{path}: the header's 'info' is not valid JSON ({reason})") from None
    if not isinstance(info, dict):
        raise MotionFileError(f"{path}: the header's 'info' is a JSON {type(info).__name__}; expected an object "
                              "({...})")
    return info


def load_motion_vectors(path: str | os.PathLike) -> tuple[MotionVectors, torch.Tensor | None, dict[str, str]]:
    """(MotionVectors, residual (int16 or int32 by precision) or None, header) from a file written by
    save_motion_vectors (format 1 or 2); raises MotionFileError for a foreign, damaged, inconsistent, oversized
    or unknown-version file."""
    metadata = read_header(path)
    path = os.fspath(path)
    info = _info(metadata, path)
    try:
        with safe_open(path, framework="pt") as f:
            pairs, h, w, precision = _check_layout(f, metadata, path)
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as error:
        raise MotionFileError(f"{path}: its tensor data cannot be read ({error}); the file is damaged") from None
    if metadata.get("sha256") != _digest(tensors):
        raise MotionFileError(f"{path}: its data does not match the checksum in its header; the file is damaged "
                              "(save it again)")
    try:
        motion = MotionVectors(tensors["vectors"], _int(metadata, "block_size", path), (h, w),
                               metadata.get("source", ""), _int(metadata, "search_range", path), info, precision)
    except (ValueError, TypeError) as error:
        raise MotionFileError(f"{path}: inconsistent contents: {error}") from None
    residual = tensors.get("residual")
    if residual is not None:
        try:
            check_residual(residual, motion)
        except ValueError as error:
            raise MotionFileError(f"{path}: {error}") from None
    return motion, residual, metadata


def list_motion_files(root: str | os.PathLike) -> list[str]:
    """.safetensors files under `root` and its subfolders (hidden folders skipped), as sorted '/'-separated paths
    relative to it. Links are followed like core LoadImage follows them (also to folders outside `root`), but every
    real folder is listed once (so `ln -s . loop` cannot loop), at most LIST_MAX_DEPTH folders deep, and the walk
    stops after LIST_MAX_FOLDERS folders or LIST_MAX_FILES files (logged)."""
    found, seen, pending = [], set(), [("", 0)]
    while pending:
        if len(seen) >= LIST_MAX_FOLDERS or len(found) >= LIST_MAX_FILES:
            log.warning("motion-vector file list of %s stopped after %d folders and %d files; move files into "
                        "fewer folders", root, len(seen), len(found))
            break
        rel, depth = pending.pop()
        folder = os.path.join(root, rel)
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir():
                    if depth < LIST_MAX_DEPTH and not entry.name.startswith("."):
                        pending.append((name, depth + 1))
                elif entry.name.endswith(SUFFIX) and entry.is_file():
                    found.append(name)
            except OSError:  # a dangling or unreadable link
                continue
    return sorted(found[:LIST_MAX_FILES])
