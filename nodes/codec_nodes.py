"""ComfyUI glue for the motion-vector codec (../codec): Motion Vector Encode / Decode, Save / Load Motion Vectors.

Encode -> Decode and Encode -> Save -> Load -> Decode return the IMAGE batch bit for bit, for any float32 IMAGE
(codec/types.py): frames on the 8-bit grid (LoadImage, ComfyUI 0.8.0's LoadVideo) are coded as uint8 with an int16
residual that travels as the float32 IMAGE (r + 255) / 510 (the small file); other frames (ComfyUI 0.30.0's
LoadVideo gives float32 gbrpf32le) as float32 with the int32 difference of the float32 bit patterns, travelling as a
float64 IMAGE 0.5 + d / 2^33 (it carries bit patterns, not brightness: its preview looks flat grey). An empty
residual IMAGE (0 frames, what Load gives for a motion-only file) means "no residual" to Decode and Save.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
import re
from typing import Any

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io, ui

from .. import codec
from . import checks

MOTION_VECTORS = io.Custom("MOTION_VECTORS")
RANGE_TOLERANCE = 1e-6  # IMAGE values may stray this far outside 0..1 (float rounding upstream)
PREVIEW_TOOLTIP = (f"The vector field per frame pair as a colour wheel: hue = direction, brightness = length "
                   f"(black = still). At most the first {codec.visualize.PREVIEW_MAX_FRAMES} frame pairs, at most "
                   f"{codec.visualize.PREVIEW_MAX_SIDE} px on the long side (larger frames shrunk).")
METHOD_CHOICES = {"fast search": "fast", "exhaustive search": "exhaustive", "x264 medium": "x264:medium",
                  "x264 ultrafast": "x264:ultrafast"}


def _image_batch(images: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], name: str,
                 min_frames: int = 1) -> torch.Tensor:
    """Validate an IMAGE input; its codec frames on the CPU (codec.codec_frames: uint8 when it is on the 8-bit grid,
    else float32)."""
    if isinstance(images, (list, tuple)):
        sizes = {tuple(t.shape[-3:]) for t in images}
        if len(sizes) > 1:
            raise ValueError(f"{name}: mixed frame sizes {sorted(sizes)}; resize all frames to one size first")
        images = torch.cat(list(images), 0)
    checks.image_batch(images, name, min_frames, channels=(1, 3),
                       why="motion is measured between consecutive frames" if min_frames > 1 else "")
    if images.min() < -RANGE_TOLERANCE or images.max() > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name}: values must lie in 0..1 (got {images.min().item():.3g}..{images.max().item():.3g})")
    return codec.codec_frames(images.cpu())


def _residual(residual: torch.Tensor | None, motion: codec.MotionVectors,
              name: str = "residual") -> torch.Tensor | None:
    """The codec residual of a residual IMAGE input for `motion`: None when unconnected or empty (0 frames: Load's
    output for a motion-only file), int16 from a float32 IMAGE (precision uint8), int32 from a float64 IMAGE
    (precision float32); a residual of the other precision is refused with both named."""
    if residual is None or isinstance(residual, torch.Tensor) and residual.ndim == 4 and residual.shape[0] == 0:
        return None
    residual = checks.image_batch(residual, name).cpu()
    wanted = torch.float64 if motion.precision == "float32" else torch.float32
    if residual.dtype != wanted:
        kinds = {torch.float64: "float32-precision (float64 IMAGE)", torch.float32: "uint8-precision (float32 IMAGE)"}
        raise ValueError(f"{name}: a {kinds.get(residual.dtype, str(residual.dtype))} residual, but the motion "
                         f"vectors are {motion.precision}-precision (encoded from "
                         + ("frames off the 8-bit grid" if motion.precision == "float32" else "8-bit frames")
                         + f") and take a {kinds[wanted]} residual; connect the residual of the Encode (or Load) "
                         "that made these vectors, unchanged")
    res = codec.image_to_residual(residual)
    codec.storage.check_residual(res, motion, name)
    return res


def _search_device() -> torch.device:
    device = comfy.model_management.get_torch_device()
    return device if device.type == "cuda" else torch.device("cpu")


class VCUTMotionVectorEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTMotionVectorEncode",
            display_name="Motion Vector Encode",
            category="vcut/codec",
            description=("Splits a video into its first frame, per-block motion vectors and residuals (the "
                         "decouple-content-motion paper's H.264 P-frame codec: each block's vector minimises the sum "
                         "of absolute luma differences against the previous frame; residual = frame - prediction). "
                         "Lossless for any IMAGE: Motion Vector Decode with the residual rebuilds the video bit for "
                         "bit. Frames on the 8-bit grid (LoadImage, 8-bit video) keep the small 8-bit residual; "
                         "others (e.g. ComfyUI 0.30.0's float32 LoadVideo) get an exact float32 residual (vectors "
                         "searched on round(x*255)). On a CUDA GPU the search is exhaustive."),
            inputs=[
                io.Image.Input("images", tooltip="The video as an IMAGE batch (at least 2 frames, one size, values "
                               "0..1). Decode gives it back bit for bit: 8-bit frames (x = k/255 exactly) as 8 bits, "
                               "any other float32 frames as float32."),
                io.Combo.Input("method", options=list(METHOD_CHOICES), default="fast search", tooltip="fast search: "
                               "hierarchical SAD search with predictors (CPU default, ~0.1 dB below exhaustive); "
                               "exhaustive search: every vector in the window (slow on CPU); x264 medium/ultrafast: "
                               "the vectors libx264 chooses, rounded from quarter-pel to whole pixels."),
                io.Combo.Input("block_size", options=["16", "8", "4"], default="16", tooltip="Block (macroblock) "
                               "size in pixels. Sizes the block does not divide are padded and cropped back. For "
                               "x264, 4 keeps its partitions exactly; 8/16 take the partition at each block centre."),
                io.Int.Input("search_range", default=16, min=1, max=64, tooltip="Search window +-R pixels for "
                             "the searches (ignored by x264, which chooses its own range)."),
            ],
            outputs=[
                MOTION_VECTORS.Output(display_name="motion_vectors", tooltip="Vectors, block size, frame size and "
                                      "source; connect to Motion Vector Decode."),
                io.Image.Output(display_name="residual", tooltip="One residual per frame after the first, "
                                "mid-grey = 0; feed it to Decode (or Save) unchanged for an exact rebuild. 8-bit "
                                "frames: (r + 255) / 510. Float32 frames: a float64 IMAGE of float32 bit "
                                "differences, 0.5 + d / 2^33 (it looks flat grey: bit patterns, not brightness)."),
                io.Image.Output(display_name="preview", tooltip=PREVIEW_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, method: str, block_size: str, search_range: int) -> io.NodeOutput:
        frames = _image_batch(images, "images", min_frames=2)
        block = int(block_size)
        t, h, w, c = frames.shape
        with checks.core_settings(frames="images"):  # frames no block size fits: the input is what must change
            codec.encode_decode.check_params(h, w, block, search_range, "fast")
        if method not in METHOD_CHOICES:
            raise ValueError(f"method must be one of {list(METHOD_CHOICES)}, got {method!r}")
        mode = METHOD_CHOICES[method]
        bar = comfy.utils.ProgressBar(t - 1)
        if mode.startswith("x264:"):
            if c != 3:
                raise ValueError("images: x264 vectors need RGB (3-channel) frames")
            is_float = frames.dtype == torch.float32  # x264 sees the 8-bit frames, as the searches do
            motion = codec.x264_motion_vectors(codec.image_to_uint8(frames) if is_float else frames, block,
                                               mode.split(":")[1])
            motion = dataclasses.replace(motion, precision="float32" if is_float else "uint8")
            residual = codec.residuals_for(frames, motion)
            bar.update_absolute(t - 1)
        else:
            motion, residual = codec.encode(frames, block, search_range, mode, _search_device(),
                                            progress=lambda i, n: bar.update_absolute(i, n))
        preview = codec.motion_preview(motion)
        # ui: the vector-field picture is shown on the node itself (ComfyUI's temp-image preview)
        return io.NodeOutput(motion, codec.residual_to_image(residual), preview, ui=ui.PreviewImage(preview, cls=cls))


class VCUTMotionVectorDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTMotionVectorDecode",
            display_name="Motion Vector Decode",
            category="vcut/codec",
            description=("Rebuilds a video from a first frame and motion vectors: each frame is the previous one "
                         "warped block by block, plus the residual. With Encode's residual at scale 1 the result "
                         "equals the encoded video exactly; without it (or scale 0) it is the pure motion, which "
                         "moves any first image the way the source video moved (motion transfer). The output has the "
                         "vectors' precision: 8-bit vectors quantise the first frame to 8 bits, float32 vectors "
                         "use it unchanged."),
            inputs=[
                io.Image.Input("first_frame", tooltip="The start image; with a batch, its first image is used. "
                               "Must have the vectors' frame size unless resize_first_frame is on. Quantised to "
                               "8 bits (round(x*255)) for vectors of 8-bit frames; used as float32 for vectors of "
                               "float32 frames. A grey image is used as RGB when the residual is RGB."),
                MOTION_VECTORS.Input("motion_vectors", tooltip="From Motion Vector Encode (search or x264)."),
                io.Image.Input("residual", optional=True, tooltip="Encode's (or Load's) residual output, "
                               "unchanged (one per frame after the first; it must be of the vectors' precision). "
                               "Unconnected or empty (Load of a motion-only file) = motion-only warp."),
                io.Float.Input("residual_scale", default=1.0, min=-2.0, max=2.0, step=0.05, tooltip="Multiplies "
                               "the residual: 1 = exact rebuild, 0 = motion only, between = partial detail "
                               "(float32 vectors: prediction + scale x (exact - prediction)). Results are clipped "
                               "to 0..1 (at scale 1 with the encoded first frame nothing is clipped)."),
                io.Boolean.Input("resize_first_frame", default=False, tooltip="If the first frame's size differs "
                                 "from the vectors' frame size: off = error, on = resize it (bilinear, aspect not "
                                 "kept) to the vectors' size."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The decoded video, one frame more than the "
                                     "vector fields.")],
        )

    @classmethod
    def execute(cls, first_frame: torch.Tensor, motion_vectors: codec.MotionVectors, residual_scale: float,
                resize_first_frame: bool, residual: torch.Tensor | None = None) -> io.NodeOutput:
        if not isinstance(motion_vectors, codec.MotionVectors):
            raise ValueError("motion_vectors: expected MOTION_VECTORS from Motion Vector Encode")
        image = checks.image_batch(first_frame, "first_frame")[:1]
        h, w = motion_vectors.frame_size
        if tuple(image.shape[1:3]) != (h, w):
            if not resize_first_frame:
                origin = motion_vectors.info.get("file")
                raise ValueError(f"first_frame is {image.shape[2]}x{image.shape[1]} but the motion vectors"
                                 + (f" (loaded from {origin})" if origin else "") + f" are for {w}x{h} frames; use "
                                 "an image of that size or turn on resize_first_frame")
            image = comfy.utils.common_upscale(image.movedim(-1, 1), w, h, "bilinear", "disabled").movedim(1, -1)
            image = image.clamp(0, 1)
        first = _image_batch(image, "first_frame")[0]
        is_float = motion_vectors.precision == "float32"
        if is_float:
            first = codec.codec_to_image(first)  # the IMAGE's own float32 values (uint8 / 255 is exactly them)
        elif first.dtype != torch.uint8:
            first = codec.image_to_uint8(first)  # 8-bit vectors: quantised as Encode quantises
        res = _residual(residual, motion_vectors)
        if res is not None and res.shape[-1] != first.shape[-1]:  # the residual carries the encoded video's colours
            if first.shape[-1] != 1:
                raise ValueError(f"first_frame: {first.shape[-1]} channels, but the residual is of a grey (1-channel) "
                                 "video; give a grey first frame, or leave residual unconnected (motion only)")
            first = first.expand(-1, -1, res.shape[-1]).contiguous()  # a grey first frame is used as RGB
        pairs = motion_vectors.vectors.shape[0]
        bar = comfy.utils.ProgressBar(pairs)
        out = codec.codec_to_image(codec.decode(first, motion_vectors, res, float(residual_scale), _search_device(),
                                                progress=lambda i, n: bar.update_absolute(i, n)))
        if is_float:  # bit differences added to another first frame give any float, NaN too: keep an IMAGE
            out = torch.nan_to_num(out, nan=0.0).clamp_(-RANGE_TOLERANCE, 1 + RANGE_TOLERANCE)
        return io.NodeOutput(out)


@functools.lru_cache(maxsize=1)
def pack_version() -> str:
    """The pack's version from its pyproject.toml (written into saved files' headers)."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return found.group(1) if found else "unknown"


def motion_files() -> list[str]:
    """.safetensors files in ComfyUI's input folder and its subfolders, as paths relative to it: links followed as
    core LoadImage follows them, each real folder once, depth and count bounded (codec.storage.list_motion_files)."""
    return codec.storage.list_motion_files(folder_paths.get_input_directory())


def motion_file_path(name: str) -> str:
    """Path of a .safetensors file named relative to ComfyUI's input folder (or, annotated as core loaders accept,
    'name [output]' / 'name [temp]'); refuses names that lead outside that folder or to another kind of file."""
    if not isinstance(name, str) or not name.endswith((codec.storage.SUFFIX, "]")):
        raise ValueError(f"file: {name!r} is not a {codec.storage.SUFFIX} file; choose a file written by Save "
                         "Motion Vectors from ComfyUI's input folder")
    relative, base = folder_paths.annotated_filepath(name)
    base = os.path.abspath(base or folder_paths.get_input_directory())
    path = os.path.abspath(os.path.join(base, relative))
    if os.path.commonpath((base, path)) != base or not path.endswith(codec.storage.SUFFIX):
        raise ValueError(f"file: {name!r} is not a {codec.storage.SUFFIX} file inside ComfyUI's input folder")
    if not os.path.isfile(path):
        raise ValueError(f"file: no motion-vector file {name!r} in ComfyUI's input folder")
    return path


class VCUTSaveMotionVectors(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTSaveMotionVectors",
            display_name="Save Motion Vectors",
            category="vcut/codec",
            description=("Saves MOTION_VECTORS (and optionally Encode's residual) to a .safetensors file in ComfyUI's "
                         "output folder, with block size, frame size, source, search range, pack and format version "
                         "in its header, so the motion can be shared, edited and loaded again (Load Motion Vectors; "
                         "copy the file into the input folder) without encoding the video again. safetensors holds "
                         "plain tensors: nothing is pickled."),
            inputs=[
                MOTION_VECTORS.Input("motion_vectors", tooltip="From Motion Vector Encode or Load Motion Vectors."),
                io.Image.Input("residual", optional=True, tooltip="Encode's (or Load's) residual output, unchanged "
                               "(one per frame pair), saved with the vectors so Decode can rebuild the video bit for "
                               "bit: int16 for vectors of 8-bit frames (the small file), the exact int32 bit "
                               "differences for vectors of float32 frames. Unconnected or empty = motion only."),
                io.String.Input("filename_prefix", default="vcut/motion_vectors", tooltip="File name prefix in "
                                "ComfyUI's output folder; a counter and .safetensors are appended (prefix_00001_"
                                ".safetensors). May hold subfolders and %date% fields like the core save nodes."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion_vectors: codec.MotionVectors, filename_prefix: str,
                residual: torch.Tensor | None = None) -> io.NodeOutput:
        if not isinstance(motion_vectors, codec.MotionVectors):
            raise ValueError("motion_vectors: expected MOTION_VECTORS from Motion Vector Encode or Load Motion Vectors")
        if not isinstance(filename_prefix, str) or not filename_prefix.strip():
            raise ValueError("filename_prefix: give a file name prefix such as 'vcut/motion_vectors'")
        res = _residual(residual, motion_vectors)
        output_dir = folder_paths.get_output_directory()
        h, w = motion_vectors.frame_size
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir, w, h)
        os.makedirs(folder, exist_ok=True)
        file = f"{name}_{counter:05}_{codec.storage.SUFFIX}"
        codec.save_motion_vectors(os.path.join(folder, file), motion_vectors, res, pack_version())
        # ui: the file, as core save nodes list theirs (the history and the runners read it from here)
        return io.NodeOutput(ui={"motion_vectors": [ui.SavedResult(file, subfolder, io.FolderType.output)]})


class VCUTLoadMotionVectors(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTLoadMotionVectors",
            display_name="Load Motion Vectors",
            category="vcut/codec",
            description=("Loads MOTION_VECTORS (and the residual, if saved) from a .safetensors file written by Save "
                         "Motion Vectors, from ComfyUI's input folder. Checks the header (format, version, frame "
                         "and block size, precision) and the data's checksum, and refuses other files, and files "
                         f"that would need more than {codec.MEMORY_BUDGET >> 20} MiB to load or decode, with a "
                         "message. A saved then loaded file decodes to exactly the same frames; files of older "
                         "pack versions (format 1) load too."),
            inputs=[
                io.Combo.Input("file", options=motion_files(), tooltip=".safetensors files in ComfyUI's input folder "
                               "and its subfolders (copy the output of Save Motion Vectors there; refresh the page to "
                               "see new files). Links are followed as LoadImage follows them, each folder once, "
                               f"at most {codec.storage.LIST_MAX_DEPTH} folders deep and "
                               f"{codec.storage.LIST_MAX_FILES} files."),
            ],
            outputs=[
                MOTION_VECTORS.Output(display_name="motion_vectors", tooltip="The saved vectors, block size, frame "
                                      "size and source; connect to Motion Vector Decode."),
                io.Image.Output(display_name="residual", tooltip="The saved residual (mid-grey = 0; a float64 "
                                "IMAGE of bit differences for vectors of float32 frames); an empty IMAGE (0 frames) "
                                "if the file has none, which Decode and Save take as motion only."),
                io.Image.Output(display_name="preview", tooltip=PREVIEW_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, file: str) -> io.NodeOutput:
        path = motion_file_path(file)
        try:
            motion, residual, _ = codec.load_motion_vectors(path)
        except codec.MotionFileError as error:
            raise ValueError(f"file: {error}") from None
        motion = dataclasses.replace(motion, info={**motion.info, "file": file})
        h, w = motion.frame_size
        # a motion-only file: an empty IMAGE (no memory), which Decode and Save read as "no residual", so Decode's
        # residual input can stay linked
        image = torch.zeros(0, h, w, 3) if residual is None else codec.residual_to_image(residual)
        del residual  # the file's tensor: freed before the preview is drawn
        preview = codec.motion_preview(motion)
        return io.NodeOutput(motion, image, preview, ui=ui.PreviewImage(preview, cls=cls))

    @classmethod
    def fingerprint_inputs(cls, file: str) -> Any:
        """The file's content hash (as LoadImage): a file replaced under the same name runs the node again."""
        digest = hashlib.sha256()
        with open(motion_file_path(file), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @classmethod
    def validate_inputs(cls, file: str) -> bool | str:
        try:
            codec.storage.read_header(motion_file_path(file))
        except ValueError as error:
            return str(error) if str(error).startswith("file:") else f"file: {error}"
        return True


NODES = [VCUTMotionVectorEncode, VCUTMotionVectorDecode, VCUTSaveMotionVectors, VCUTLoadMotionVectors]
