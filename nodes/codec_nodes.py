"""ComfyUI glue for the motion-vector codec (../codec): Motion Vector Encode / Motion Vector Decode.

IMAGE batches (float32 [B, H, W, C] in 0..1) are quantised to 8 bits with round(x * 255) -- exact for frames that
came from 8-bit files or video -- so decode(encode(video)) returns the same IMAGE bit for bit. Residuals travel as
an IMAGE with zero at mid-grey: (r + 255) / 510, which the decoder inverts exactly.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.utils
from comfy_api.latest import io, ui

from .. import codec

MOTION_VECTORS = io.Custom("MOTION_VECTORS")
METHODS = {"fast search": "fast", "exhaustive search": "exhaustive", "x264 medium": "x264:medium",
           "x264 ultrafast": "x264:ultrafast"}


def _image_batch(images, name: str, min_frames: int = 1) -> torch.Tensor:
    """Validate an IMAGE input and quantise it to uint8 [B, H, W, C] on the CPU."""
    if isinstance(images, (list, tuple)):
        sizes = {tuple(t.shape[-3:]) for t in images}
        if len(sizes) > 1:
            raise ValueError(f"{name}: mixed frame sizes {sorted(sizes)}; resize all frames to one size first")
        images = torch.cat(list(images), 0)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"{name}: expected an IMAGE batch [frames, height, width, channels]")
    if images.shape[0] < min_frames:
        raise ValueError(f"{name}: got {images.shape[0]} frame(s), need at least {min_frames}"
                         + (" (motion is measured between consecutive frames)" if min_frames > 1 else ""))
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 or 3 channels (RGB), got {images.shape[-1]}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise ValueError(f"{name}: values must lie in 0..1 (got {images.min().item():.3g}..{images.max().item():.3g})")
    return codec.image_to_uint8(images.cpu())


def _search_device() -> torch.device:
    device = comfy.model_management.get_torch_device()
    return device if device.type == "cuda" else torch.device("cpu")


class MotionVectorEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTMotionVectorEncode",
            display_name="Motion Vector Encode",
            category="vcut/codec",
            description=("Splits a video into its first frame, per-block motion vectors and residuals (the "
                         "decouple-content-motion paper's H.264 P-frame codec: each block's vector minimises the sum "
                         "of absolute luma differences against the previous frame; residual = frame - prediction). "
                         "Lossless: Motion Vector Decode with the residual rebuilds the video exactly. Frames are "
                         "quantised to 8 bits (round(x*255)). On a CUDA GPU the search is exhaustive."),
            inputs=[
                io.Image.Input("images", tooltip="The video as an IMAGE batch (at least 2 frames, one size). "
                               "Quantised to 8 bits with round(x*255), exact for frames loaded from files."),
                io.Combo.Input("method", options=list(METHODS), default="fast search", tooltip="fast search: "
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
                                "mid-grey = 0 ((r + 255) / 510); feed it to Decode for an exact rebuild."),
                io.Image.Output(display_name="preview", tooltip="The vector field per frame pair as a colour "
                                "wheel: hue = direction, brightness = length (black = still)."),
            ],
        )

    @classmethod
    def execute(cls, images, method, block_size, search_range) -> io.NodeOutput:
        frames = _image_batch(images, "images", min_frames=2)
        block = int(block_size)
        t, h, w, c = frames.shape
        codec.codec.check_params(h, w, block, search_range, "fast")
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        mode = METHODS[method]
        bar = comfy.utils.ProgressBar(t - 1)
        if mode.startswith("x264:"):
            if c != 3:
                raise ValueError("images: x264 vectors need RGB (3-channel) frames")
            motion = codec.x264_motion_vectors(frames, block, mode.split(":")[1])
            residual = codec.residuals_for(frames, motion)
            bar.update_absolute(t - 1)
        else:
            motion, residual = codec.encode(frames, block, search_range, mode, _search_device(),
                                            progress=lambda i, n: bar.update_absolute(i, n))
        preview = codec.motion_preview(motion)
        # ui: the vector-field picture is shown on the node itself (ComfyUI's temp-image preview)
        return io.NodeOutput(motion, codec.residual_to_image(residual), preview, ui=ui.PreviewImage(preview, cls=cls))


class MotionVectorDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTMotionVectorDecode",
            display_name="Motion Vector Decode",
            category="vcut/codec",
            description=("Rebuilds a video from a first frame and motion vectors: each frame is the previous one "
                         "warped block by block, plus the residual. With Encode's residual at scale 1 the result "
                         "equals the encoded video exactly; without it (or scale 0) it is the pure motion, which "
                         "moves any first image the way the source video moved (motion transfer)."),
            inputs=[
                io.Image.Input("first_frame", tooltip="The start image; with a batch, its first image is used. "
                               "Must have the vectors' frame size unless resize_first_frame is on. Quantised to "
                               "8 bits (round(x*255))."),
                MOTION_VECTORS.Input("motion_vectors", tooltip="From Motion Vector Encode (search or x264)."),
                io.Image.Input("residual", optional=True, tooltip="Encode's residual output (one per frame after "
                               "the first). Leave unconnected for a motion-only warp."),
                io.Float.Input("residual_scale", default=1.0, min=-2.0, max=2.0, step=0.05, tooltip="Multiplies "
                               "the residual: 1 = exact rebuild, 0 = motion only, between = partial detail. Results "
                               "are clipped to 0..1."),
                io.Boolean.Input("resize_first_frame", default=False, tooltip="If the first frame's size differs "
                                 "from the vectors' frame size: off = error, on = resize it (bilinear, aspect not "
                                 "kept) to the vectors' size."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The decoded video, one frame more than the "
                                     "vector fields.")],
        )

    @classmethod
    def execute(cls, first_frame, motion_vectors, residual_scale, resize_first_frame,
                residual=None) -> io.NodeOutput:
        if not isinstance(motion_vectors, codec.MotionVectors):
            raise ValueError("motion_vectors: expected MOTION_VECTORS from Motion Vector Encode")
        if not isinstance(first_frame, torch.Tensor) or first_frame.ndim != 4 or first_frame.shape[0] == 0:
            raise ValueError("first_frame: expected a non-empty IMAGE batch [frames, height, width, channels]")
        image = first_frame[:1]
        h, w = motion_vectors.frame_size
        if tuple(image.shape[1:3]) != (h, w):
            if not resize_first_frame:
                raise ValueError(f"first_frame is {image.shape[2]}x{image.shape[1]} but the motion vectors are for "
                                 f"{w}x{h} frames; use an image of that size or turn on resize_first_frame")
            image = comfy.utils.common_upscale(image.movedim(-1, 1), w, h, "bilinear", "disabled").movedim(1, -1)
            image = image.clamp(0, 1)
        first = _image_batch(image, "first_frame")[0]
        res = None
        if residual is not None:
            if not isinstance(residual, torch.Tensor) or residual.ndim != 4 or residual.shape[0] == 0:
                raise ValueError("residual: expected a non-empty IMAGE batch (Encode's residual output)")
            if not torch.isfinite(residual).all():
                raise ValueError("residual: contains NaN or infinite values")
            res = codec.image_to_residual(residual.cpu())
        pairs = motion_vectors.vectors.shape[0]
        bar = comfy.utils.ProgressBar(pairs)
        out = codec.decode(first, motion_vectors, res, float(residual_scale), _search_device(),
                           progress=lambda i, n: bar.update_absolute(i, n))
        return io.NodeOutput(codec.uint8_to_image(out))


NODES = [MotionVectorEncode, MotionVectorDecode]
