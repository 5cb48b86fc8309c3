"""Long SVD videos: Video Extend (STIV frame replacement used for video prediction) and Join Video Segments.

The continuation recipe is loop/plans.continuation_plan, the join is loop/segments.py; the nodes validate, clone
and attach (anchor_patch.py), as the loop nodes do.
"""
from __future__ import annotations

import comfy.utils
from comfy_api.latest import io

from ..loop import anchoring, plans, segments
from . import checks
from .anchor_patch import attach_plan, plan_outputs
from .compat import schema_extras

log = checks.log
EXTEND_KEY = "vcut_video_extend"
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
                         "segment and join them with Join Video Segments (same overlap). Composes with VCUT Patch "
                         "Model, Cut Step Scheduler and Loop Conditioning."),
            inputs=[
                io.Model.Input("model", tooltip="The SVD model (cloned and patched; the input is unchanged)."),
                io.Latent.Input("previous", tooltip="The previous segment's sampled LATENT (the KSampler output, "
                                "[frames, 4, h, w]). Sets the new segment's size."),
                io.Conditioning.Input("positive", tooltip="SVD positive conditioning (from SVD_img2vid_Conditioning: "
                                      "the first segment's, or one made from the previous segment's last frame). Its "
                                      "CLIP image embedding, fps and motion bucket are kept."),
                io.Conditioning.Input("negative", tooltip="SVD negative conditioning from the same node."),
                io.Int.Input("overlap", default=2, min=1, max=24, tooltip="k: frames the new segment shares with the "
                             "previous one (1..3 is typical). More carries more of the previous motion across the "
                             "joint (smoother, less drift) but leaves fewer new frames per segment (frames - k); 1 "
                             "passes on only the last image, so the motion may restart at the joint."),
                io.Int.Input("frames", default=25, min=2, max=256, tooltip="Frames of the new segment, overlap "
                             "included (SVD-XT: 25, SVD: 14). It adds frames - overlap new frames."),
                io.Float.Input("anchor_steps", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the "
                               "sampling steps that are anchored. 1.0 makes the overlap exact; less lets it drift at "
                               "the end."),
                io.Boolean.Input("jit_cfg", default=True, tooltip="STIV's joint image-text CFG: only the "
                                 "conditional branch sees the anchors and the image; the unconditional branch sees "
                                 "neither. Off: both branches are anchored."),
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
            ],
        )

    @classmethod
    def execute(cls, model, previous, positive, negative, overlap, frames, anchor_steps, jit_cfg,
                image_from_previous=True) -> io.NodeOutput:
        samples = checks.latent_samples(previous, "previous")
        anchoring.anchored_step_count(anchor_steps, 1)
        checks.image_latent_from_conditioning(positive, "positive")
        plan = plans.continuation_plan(samples, overlap, frames, image_from_previous)
        patched = attach_plan(model, plan, anchor_steps, jit_cfg, "Video Extend", EXTEND_KEY, replace=True)
        like = samples[:1]
        log.info("Video Extend: %d new frames after %d overlapping ones (segment of %d, previous %d)",
                 frames - overlap, overlap, frames, samples.shape[0])
        return io.NodeOutput(*plan_outputs(patched, positive, negative, plan, like, samples.dtype, checks.fit_latent))


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
                         "of another size are resized (centre crop) to the first one's."),
            inputs=[
                *segment_inputs,
                io.Int.Input("overlap", default=2, min=0, max=24, tooltip="Frames each segment shares with the one "
                             "before (Video Extend's overlap). 0 = plain concatenation."),
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
    def execute(cls, segment_1, overlap, colour_match, crossfade, **optional) -> io.NodeOutput:
        given = {i: optional.get(f"segment_{i}") for i in range(2, MAX_SEGMENTS + 1)}
        last = max([i for i, s in given.items() if s is not None], default=1)
        if last == 1:
            raise ValueError("segment_2: connect at least two segments to join (a single segment needs no joining)")
        missing = [i for i in range(2, last) if given[i] is None]
        if missing:
            raise ValueError(f"segment_{missing[0]}: not connected, but segment_{last} is; connect segments in "
                             f"order without gaps")
        first = checks.image_batch(segment_1, "segment_1")
        parts, notes = [first], []
        for i in range(2, last + 1):
            seg = checks.image_batch(given[i], f"segment_{i}")
            if seg.shape[-1] != first.shape[-1]:
                raise ValueError(f"segment_{i}: {seg.shape[-1]} channels but segment_1 has {first.shape[-1]}")
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
