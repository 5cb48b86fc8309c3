"""Long SVD videos: Video Extend (STIV frame replacement used for video prediction) and Join Video Segments.

The continuation recipe is anchor/plans.continuation_plan, the join is video/segments.py; the nodes validate, clone
and attach (anchor_patch.py), as the loop nodes do.
"""
from __future__ import annotations

import comfy.utils
import torch
from comfy.model_patcher import ModelPatcher
from comfy_api.latest import io

from ..anchor import anchoring, plans
from ..video import segments
from . import checks, shared_inputs
from .anchor_patch import attach_plan, plan_outputs
from .checks import Conditioning, Latent
from .comfy_compat import schema_extras
from .log import log
from .patch_layer import VIDEO_EXTEND

MAX_SEGMENTS = 8


class VCUTVideoExtend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTVideoExtend",
            display_name="Video Extend",
            category="vcut/video",
            **schema_extras(io.Schema,
                            search_aliases=["extend video", "continue video", "long video", "svd continuation"]),
            description=("Continues an SVD video past 25 frames, training-free: the new segment's first k frames are "
                         "anchored to the previous segment's last k latent frames (STIV's frame replacement used for "
                         "video prediction, with JIT-CFG), so the overlap is exact and the new frames continue its "
                         "motion. SVD conditions on the previous segment's last frame (its latent, no VAE round "
                         "trip). Chain it: KSampler -> Video Extend -> KSampler -> Video Extend ...; decode each "
                         "segment and join them with Join Video Segments, its overlap connected to this node's "
                         "overlap output. Composes with VCUT Patch Model, Cut Step Scheduler and Loop Conditioning."),
            inputs=[
                io.Model.Input("model", tooltip=shared_inputs.ANCHORED_MODEL),
                io.Latent.Input("previous", tooltip="The previous segment's sampled LATENT (the KSampler output, "
                                "[frames, 4, h, w]). Sets the new segment's size."),
                io.Conditioning.Input("positive", tooltip="SVD positive conditioning (from SVD_img2vid_Conditioning: "
                                      "the first segment's, or one made from the previous segment's last frame). Its "
                                      "CLIP image embedding, fps and motion bucket are kept."),
                io.Conditioning.Input("negative", tooltip=shared_inputs.SVD_NEGATIVE),
                shared_inputs.overlap(1, " 1..3 is typical: more carries more of the previous motion across the "
                                         "joint (smoother, less drift) but leaves fewer new frames per segment "
                                         "(frames - k); 1 passes on only the last image, so the motion may restart "
                                         "at the joint."),
                io.Int.Input("frames", default=25, min=2, max=256, tooltip="Frames of the new segment, overlap "
                             "included (SVD-XT: 25, SVD: 14). It adds frames - overlap new frames."),
                shared_inputs.anchor_steps(),
                shared_inputs.jit_cfg(),
                io.Boolean.Input("image_from_previous", default=True, tooltip="On: the image SVD conditions on "
                                 "(concat_latent_image) is the previous segment's last latent frame. Off: keep the "
                                 "conditioning's own image latent (e.g. when it was made from the last frame, or to "
                                 "return to the start image with Loop Conditioning)."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The model with the overlap anchored."),
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning for the new segment."),
                io.Conditioning.Output(display_name="negative", tooltip="Negative conditioning for the new segment."),
                io.Latent.Output(display_name="latent", tooltip="The new segment's latent with the overlap written "
                                 "in; sample this."),
                io.Int.Output(display_name="overlap", tooltip="This node's overlap k: connect it to Join Video "
                              "Segments' overlap (and to the next Video Extend's), so they cannot disagree."),
            ],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, previous: Latent, positive: Conditioning, negative: Conditioning,
                overlap: int, frames: int, anchor_steps: float, jit_cfg: bool,
                image_from_previous: bool = True) -> io.NodeOutput:
        samples = checks.latent_samples(previous, "previous")
        plans.check_overlap(overlap, samples.shape[0], frames)
        anchoring.check_anchor_steps(anchor_steps)
        checks.image_latent_from_conditioning(positive, "positive")
        if image_from_previous:
            checks.check_concat_latents(positive, samples, "positive")
            checks.check_concat_latents(negative, samples, "negative")
        plan = plans.continuation_plan(samples, overlap, frames, image_from_previous)
        patched = attach_plan(model, plan, anchor_steps, jit_cfg, "Video Extend", VIDEO_EXTEND, replace=True)
        log.info("Video Extend: %d new frames after %d overlapping ones (segment of %d, previous %d)",
                 frames - overlap, overlap, frames, samples.shape[0])
        return io.NodeOutput(*plan_outputs(patched, positive, negative, plan, samples.dtype), overlap)


class VCUTJoinVideoSegments(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        segment_inputs = [io.Image.Input("segment_1", tooltip="The first decoded segment (IMAGE batch).")]
        segment_inputs += [io.Image.Input(f"segment_{i}", optional=True, tooltip=f"Decoded segment {i}, made by "
                                          f"Video Extend from segment {i - 1}. Connect segments in order, no gaps.")
                           for i in range(2, MAX_SEGMENTS + 1)]
        return io.Schema(
            node_id="VCUTJoinVideoSegments",
            display_name="Join Video Segments",
            category="vcut/video",
            **schema_extras(io.Schema, search_aliases=["join clips", "concatenate video", "merge segments"]),
            description=("Joins decoded video segments that overlap (Video Extend) into one IMAGE batch, keeping each "
                         "overlap once: no frame duplicated, none skipped. Optional colour matching (Reinhard et "
                         "al. 2001: mean and spread per channel in CIELAB, matched through the overlaps or onto the "
                         "first segment's anchor frame) removes a colour cast a later segment picked up; optional "
                         "cross-fade blends the overlap frames of both segments. Reports each joint's frame-to-frame "
                         f"step next to the median step inside the segments. Up to {MAX_SEGMENTS} segments; segments "
                         "of another size are resized (centre crop) to the first one's. The joined video is RGB: grey "
                         "segments are used as RGB, an alpha channel is ignored."),
            inputs=[
                *segment_inputs,
                shared_inputs.overlap(0, " 0 = plain concatenation."),
                io.Combo.Input("colour_match", options=list(segments.COLOUR_MATCH), default="off", tooltip="Colour "
                               "transfer (CIELAB mean/std, Reinhard et al. 2001) of every later segment. overlap: its "
                               "overlap frames onto the same frames of the segment before (removes a colour jump at "
                               "each joint almost entirely; needs overlap >= 1). anchor frame: its first frame onto "
                               "the first segment's first frame (also pulls back slow drift, but content that really "
                               "changes colour is pulled back too). off: frames unchanged."),
                io.Boolean.Input("crossfade", default=False, tooltip="Blend the overlap frames linearly from the "
                                 "earlier segment to the later one instead of keeping the earlier segment's."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The joined video."),
                io.String.Output(display_name="seam_report", tooltip="Per joint: the step across it vs the median "
                                 "step inside the segments (about 1x = smooth, much more = a visible jump)."),
            ],
        )

    @classmethod
    def execute(cls, segment_1: torch.Tensor, overlap: int, colour_match: str, crossfade: bool,
                **optional: torch.Tensor | None) -> io.NodeOutput:
        given = {i: optional.get(f"segment_{i}") for i in range(2, MAX_SEGMENTS + 1)}
        last = max([i for i, s in given.items() if s is not None], default=1)
        if last == 1:
            raise ValueError("segment_2: connect at least two segments to join (a single segment needs no joining)")
        missing = [i for i in range(2, last) if given[i] is None]
        if missing:
            raise ValueError(f"segment_{missing[0]}: not connected, but segment_{last} is; connect segments in "
                             f"order without gaps")
        first = checks.image_batch(segment_1, "segment_1", rgb=True)
        parts, notes = [first], []
        for i in range(2, last + 1):
            seg = checks.image_batch(given[i], f"segment_{i}", rgb=True)
            if seg.shape[1:3] != first.shape[1:3]:
                notes.append(f"segment_{i} {seg.shape[2]}x{seg.shape[1]} resized (centre crop) to "
                             f"{first.shape[2]}x{first.shape[1]}")
                seg = checks.fit_images(seg, first.shape[1], first.shape[2]).clamp(0, 1)
            parts.append(seg)
        lengths = [p.shape[0] for p in parts]
        segments.check_segments(lengths, overlap, [f"segment_{i}" for i in range(1, last + 1)])
        bar = comfy.utils.ProgressBar(2)
        video = segments.join_segments(parts, overlap, colour_match, crossfade)
        bar.update(1)
        _, report = segments.seam_report(video, lengths, overlap)
        bar.update(1)
        report = "\n".join([report] + [f"note: {n}" for n in notes])
        log.info("Join Video Segments: %s", report.replace("\n", "; "))
        return io.NodeOutput(video, report)


NODES = [VCUTVideoExtend, VCUTJoinVideoSegments]
