"""Video Compare: ComfyUI glue around video/compare.py (per-frame PSNR, SSIM and temporal difference of two videos)."""
from __future__ import annotations

import math

import comfy.utils
import torch
from comfy_api.latest import io, ui

from ..video import compare
from .comfy_compat import schema_extras
from .run import report


class VCUTVideoCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTVideoCompare",
            display_name="Video Compare",
            category="vcut/video",
            is_output_node=True,
            **schema_extras(io.Schema, search_aliases=["psnr", "ssim", "compare videos", "video difference",
                                                       "flicker"]),
            description=(
                "How far an accelerated video (VCUT, Cut Step Scheduler, UNet Feature Cache, ...) is from the exact "
                "one made with the same seed: per-frame PSNR and SSIM on the frames as they are (float, no 8-bit "
                "rounding), and the temporal difference, flicker that PSNR misses: mean |(c[t+1] - c[t]) - "
                "(r[t+1] - r[t])| as a percentage of the reference's own mean frame-to-frame change |r[t+1] - r[t]| "
                "(0% = the candidate changes from frame to frame exactly as the reference does). Mean PSNR is the "
                "whole video's (from the mean squared error over all frames). Shows reference | candidate | "
                "difference on the node and the summary as its progress text. Both videos need one frame count and "
                "size; alpha is ignored. One frame pair at a time in float32."),
            inputs=[
                io.Image.Input("reference", tooltip="The exact video (IMAGE batch), e.g. the unpatched model's "
                               "output with the same seed."),
                io.Image.Input("candidate", tooltip="The video to check against it (IMAGE batch of the same frame "
                               "count and size), e.g. the accelerated run's output."),
                io.String.Input("reference_label", default="reference", optional=True,
                                tooltip="Name of the reference in the summary, preview and plot (e.g. 'exact')."),
                io.String.Input("candidate_label", default="candidate", optional=True,
                                tooltip="Name of the candidate in the summary, preview and plot (e.g. 'VCUT cut 17')."),
            ],
            outputs=[
                io.Image.Output(display_name="preview", tooltip="Per frame: reference | candidate | |difference| "
                                "(channel mean, brightened by the factor in its label, one factor for the whole "
                                "video), each panel at most 512 px on its long side. Also shown on the node."),
                io.Image.Output(display_name="plot", tooltip="Per-frame curves: PSNR (an identical frame's inf as "
                                "a hollow marker on the top edge), SSIM, temporal difference."),
                io.String.Output(display_name="summary", tooltip="One line, e.g. 'VCUT vs exact: mean PSNR 34.1 dB, "
                                 "min 29.8 at frame 17, SSIM 0.962, temporal difference 0.8%' (frames counted from "
                                 "0), or 'identical' for exactly equal videos. Also the node's progress text."),
                io.String.Output(display_name="per_frame", tooltip="CSV: frame, psnr_db, ssim, "
                                 "temporal_difference_pct (from the previous frame; empty for frame 0)."),
                io.Float.Output(display_name="psnr", tooltip="Mean PSNR in dB (the whole video's, from the mean "
                                "squared error over all frames; data range 1); inf when the videos are identical."),
                io.Float.Output(display_name="ssim", tooltip="Mean SSIM over the frames (1 = identical)."),
                io.Float.Output(display_name="temporal_difference", tooltip="Temporal difference in % (0 = the "
                                "candidate's frame-to-frame changes equal the reference's); NaN for one-frame "
                                "videos, which have no frame-to-frame change; inf when the reference is still and "
                                "the candidate is not."),
            ],
        )

    @classmethod
    def execute(cls, reference: torch.Tensor, candidate: torch.Tensor, reference_label: str = "reference",
                candidate_label: str = "candidate") -> io.NodeOutput:
        reference_label = reference_label.strip() or "reference"
        candidate_label = candidate_label.strip() or "candidate"
        bar = comfy.utils.ProgressBar(2)  # the comparison, then the preview: 2 x frames (total set by the core)
        result = compare.compare_videos(reference, candidate,
                                        progress=lambda done, total: bar.update_absolute(done, 2 * total))
        preview = compare.preview(reference, candidate, result, reference_label, candidate_label)
        bar.update_absolute(2 * result.frames, 2 * result.frames)
        plot = torch.from_numpy(compare.render_plot(result, reference_label, candidate_label))[None]
        summary = compare.summary(result, reference_label, candidate_label)
        report("Video Compare", summary)  # the log line, and the node's progress text where ComfyUI shows it
        td = result.temporal_difference
        return io.NodeOutput(preview, plot, summary, compare.per_frame_table(result), result.video_psnr,
                             result.mean_ssim, math.nan if td is None else td, ui=ui.PreviewImage(preview, cls=cls))


NODES = [VCUTVideoCompare]
