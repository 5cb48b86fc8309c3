"""Salient Mask and Video Loop Metrics: ComfyUI glue around loop/saliency.py and loop/metrics.py."""
from __future__ import annotations

import comfy.utils
import torch
from comfy.clip_vision import ClipVisionModel
from comfy_api.latest import io, ui

from ..loop.metrics import format_metrics, loop_metrics, render_plot
from ..loop.saliency import is_trivial_mask, mask_preview, salient_masks
from .log import log


class VCUTSalientMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTSalientMask",
            display_name="Salient Mask",
            category="vcut/loop",
            description=(
                "Finds the salient object of each image without any downloaded model (LoopAnimate's FGSM mask M0, "
                "Eq. 9-10: the region allowed to move in a loop with a still background). Classical detector: "
                "minimum barrier distance to the border + border-colour contrast + centre prior, thresholded, "
                "refined with GrabCut near the edge, cleaned (small components dropped, holes filled). On a video "
                "batch the saliency is smoothed over time so the mask does not flicker, and weighted by each frame's "
                "own motion (camera motion removed), so the object that moves wins over a still one. Outputs the MASK "
                "and a preview (mask tinted over the image, still region darkened)."),
            inputs=[
                io.Image.Input("images", tooltip="Image or video batch [B,H,W,C]; one mask per image."),
                io.Float.Input("threshold", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Saliency level (0..1) above which a pixel is the object; 0 = automatic "
                                       "(Otsu's threshold per image)."),
                io.Boolean.Input("refine", default=True,
                                 tooltip="Snap the mask boundary to colour edges with GrabCut (slower, usually "
                                         "tighter)."),
                io.Float.Input("min_area", default=0.01, min=0.0, max=0.5, step=0.005,
                               tooltip="Drop mask components smaller than this fraction of the image (the largest "
                                       "component is always kept)."),
                io.Int.Input("dilate", default=0, min=0, max=256,
                             tooltip="Grow the mask by this many pixels (gives the moving object some room)."),
                io.Float.Input("feather", default=0.0, min=0.0, max=64.0, step=0.5,
                               tooltip="Soft edge: Gaussian blur sigma in pixels applied to the mask (0 = hard)."),
                io.Float.Input("temporal_smoothing", default=0.5, min=0.0, max=0.95, step=0.05,
                               tooltip="Video batches: how strongly saliency is smoothed over time (0 = each "
                                       "frame alone). Above 0 a 3-frame majority vote also removes flicker."),
                io.Float.Input("motion", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="Video batches: how strongly each frame's saliency is weighted by its own "
                                       "motion (optical flow minus the camera's motion). 0 = every frame is a "
                                       "still; frames with almost no motion (under 3 px at the 256 px working "
                                       "size, about 1% of the long side) are treated as stills anyway."),
            ],
            outputs=[
                io.Mask.Output("mask", tooltip="Salient-object masks [B,H,W], 1 = object."),
                io.Image.Output("preview", tooltip="The mask over the image."),
            ],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, threshold: float, refine: bool, min_area: float, dilate: int,
                feather: float, temporal_smoothing: float, motion: float = 1.0) -> io.NodeOutput:
        bar = comfy.utils.ProgressBar(3 * images.shape[0])  # maps, motion cues, masks (total set by the core)
        masks = salient_masks(images, threshold=threshold if threshold > 0 else -1.0, refine=refine,
                              min_area=min_area, dilate=dilate, feather=feather,
                              temporal_smoothing=temporal_smoothing, motion=motion,
                              progress=lambda done, total: bar.update_absolute(done, total))
        trivial = is_trivial_mask(masks)
        if trivial:
            log.warning("Salient Mask: the mask is %s (no distinct salient object found)", trivial)
        preview = mask_preview(images, masks)
        # ui: the tinted mask is shown on the node itself (ComfyUI's temp-image preview)
        return io.NodeOutput(masks, preview, ui=ui.PreviewImage(preview, cls=cls))


class VCUTVideoLoopMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTVideoLoopMetrics",
            display_name="Video Loop Metrics",
            category="vcut/loop",
            description=(
                "LoopAnimate's metrics for a generated video: Loop-C (cosine of first and last frame embeddings), "
                "FC (mean cosine of consecutive frames), CLIP-I (mean cosine of frames to the input image), "
                "MSE_F0 (first frame vs input image, 0..255 scale), motion (1 - mean SSIM of consecutive frames). "
                "With a CLIP vision model the cosines use CLIP image embeddings; without one they use a pixel-space "
                "embedding (32x32 RGB) and are labelled 'pixel'. An input image of another size is centre-cropped "
                "and resized to the frames' size (as SVD's conditioning does) and the report says so. Works one frame "
                "pair at a time in float32: about 0.15 GB above the frames at 1024x576, whatever the video's length."),
            inputs=[
                io.Image.Input("frames", tooltip="The video frames [T,H,W,C], at least 2."),
                io.Image.Input("image", tooltip="The input (start) image; the first image of a batch is used."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional CLIP vision model (CLIPVisionLoader) for CLIP embeddings; "
                                            "without it the metrics are pixel-space."),
            ],
            outputs=[
                io.String.Output("report", tooltip="The metrics as text."),
                io.Image.Output("plot", tooltip="Per-frame similarity plot."),
                io.Float.Output("loop_c", tooltip="Loop-C (cosine of first and last frame)."),
                io.Float.Output("motion", tooltip="1 - mean SSIM of consecutive frames."),
            ],
        )

    @classmethod
    def execute(cls, frames: torch.Tensor, image: torch.Tensor,
                clip_vision: ClipVisionModel | None = None) -> io.NodeOutput:
        embed = None
        if clip_vision is not None:
            def embed(batch: torch.Tensor) -> torch.Tensor:
                return clip_vision.encode_image(batch)["image_embeds"].float().cpu()
        m = loop_metrics(frames, image, embed)
        for note in m["notes"]:
            log.info("Video Loop Metrics: %s", note)
        plot = torch.from_numpy(render_plot(m))[None]
        return io.NodeOutput(format_metrics(m), plot, m["loop_c"], m["motion"])


NODES = [VCUTSalientMask, VCUTVideoLoopMetrics]
