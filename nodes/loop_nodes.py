"""ComfyUI glue for frame anchoring and loops: STIV Frame Replace, Loop Conditioning, ALSS Loop Clip, Drop Closing
Frame.

The recipes are plans (anchors, keep mask, init latent, concat layout) built in ../anchor/plans.py and
../loop/conditioning.py; the nodes validate their inputs (checks.py), clone the model and attach the plan's
anchoring (anchor_patch.py).
"""
from __future__ import annotations

import torch
from comfy.model_patcher import ModelPatcher
from comfy.sd import VAE
from comfy_api.latest import io

from ..anchor import anchoring, plans
from ..loop import alss
from ..loop import conditioning as loop_cond
from . import checks, shared_inputs
from .anchor_patch import attach_plan, plan_outputs
from .checks import Conditioning, Latent
from .comfy_compat import schema_extras
from .log import log
from .patch_layer import FRAME_REPLACE, LOOP_ANCHOR


class VCUTFrameReplace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTFrameReplace",
            display_name="STIV Frame Replace",
            category="vcut/loop",
            **schema_extras(io.Schema,
                            search_aliases=["keyframe", "first frame", "last frame", "frame anchor", "stiv"]),
            description=("Anchors chosen frames of an SVD video to an image latent (STIV's frame replacement, "
                         "training-free): at each step the anchored frames of the model input are the anchor at the "
                         "current noise level and the denoised anchored frames are the clean anchor, so the finished "
                         "anchored frames equal the anchor exactly. JIT-CFG keeps anchors and image out of the "
                         "unconditional branch. Connect the LATENT output to the sampler."),
            inputs=[
                io.Model.Input("model", tooltip=shared_inputs.ANCHORED_MODEL),
                io.Latent.Input("latent", tooltip="The video latent to sample ([frames, 4, h, w], e.g. from "
                                "SVD_img2vid_Conditioning). Sets the frame count and size; the anchors are written "
                                "into the output latent."),
                io.String.Input("frames", default="0", tooltip="Frames to anchor, comma-separated: '0' (first), "
                                "'0,-1' (first and last), '0,12,24'. Negative counts from the end. Out-of-range or "
                                "repeated frames are an error."),
                shared_inputs.anchor_steps(),
                shared_inputs.jit_cfg(),
                io.Conditioning.Input("positive", optional=True, tooltip="SVD positive conditioning; its image "
                                      "latent (concat_latent_image) is the anchor when no anchor_latent or "
                                      "anchor_image is given."),
                io.Latent.Input("anchor_latent", optional=True, tooltip="Anchor latent(s): 1 frame (used for every "
                                "listed frame) or one per listed frame, in order. Resized to the video like SVD does."),
                io.Image.Input("anchor_image", optional=True, tooltip="Anchor image(s) (needs vae): 1 or one per "
                               "listed frame. Resized (centre crop, bilinear) to the video size like "
                               "SVD_img2vid_Conditioning, then encoded. A grey image is used as RGB; an alpha "
                               "channel is ignored."),
                io.Vae.Input("vae", optional=True, tooltip="VAE to encode anchor_image."),
                io.Mask.Input("mask", optional=True, tooltip="Anchor only this region (1 = anchored): 1 mask, one "
                              "per listed frame, or one per video frame. Resized (centre crop, area) to the latent. "
                              "An all-zero mask is an error."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The model with frame replacement."),
                io.Latent.Output(display_name="latent", tooltip="The latent with the anchors written in; sample this."),
            ],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, latent: Latent, frames: str, anchor_steps: float, jit_cfg: bool,
                positive: Conditioning | None = None, anchor_latent: Latent | None = None,
                anchor_image: torch.Tensor | None = None, vae: VAE | None = None,
                mask: torch.Tensor | None = None) -> io.NodeOutput:
        samples = checks.latent_samples(latent, "latent", min_frames=2)
        n, _, h, w = samples.shape
        frame_list = anchoring.parse_frame_list(frames, n, "frames")
        anchoring.check_anchor_steps(anchor_steps)
        if positive is not None:  # SVD resizes its image latent to the video latent: refuse what it cannot
            checks.check_svd_resizes(positive, samples, "positive", "latent")
        if anchor_latent is not None:
            source = "anchor_latent"
            anchors = checks.fit_latent(checks.latent_samples(anchor_latent, source), samples, source)
        elif anchor_image is not None:
            source = "anchor_image"
            if vae is None:
                raise ValueError("anchor_image: connect a vae to encode it (or give anchor_latent)")
            pixels = checks.fit_images(checks.image_batch(anchor_image, source, rgb=True), h * 8, w * 8)
            anchors = checks.fit_latent(vae.encode(pixels), samples, source)
        elif positive is not None:
            source = "positive"
            anchors = checks.fit_latent(checks.image_latent_from_conditioning(positive, source), samples, source)
        else:
            raise ValueError("STIV Frame Replace: give an anchor (anchor_latent, anchor_image + vae, or the SVD "
                             "positive conditioning whose image latent is used)")
        if anchors.shape[0] not in (1, len(frame_list)):
            raise ValueError(f"{source}: {anchors.shape[0]} anchors for {len(frame_list)} listed frame(s) "
                             f"({frames!r}); give 1 (used for every listed frame) or exactly {len(frame_list)}")
        spatial = None
        if mask is not None:
            spatial = checks.latent_mask(mask, h, w, "mask", "nothing would be anchored")
            if spatial.shape[0] == n and len(frame_list) != n:
                spatial = spatial[frame_list]
            elif spatial.shape[0] not in (1, len(frame_list)):
                raise ValueError(f"mask: {spatial.shape[0]} masks; give 1, one per listed frame "
                                 f"({len(frame_list)}) or one per video frame ({n})")
        plan = plans.frame_replace_plan(samples, frame_list, anchors, spatial)
        patched = attach_plan(model, plan, anchor_steps, jit_cfg, "STIV Frame Replace", FRAME_REPLACE)
        log.info("STIV Frame Replace: anchoring frames %s of %d (jit_cfg=%s, anchor_steps=%.2f)",
                 frame_list, n, jit_cfg, anchor_steps)
        return io.NodeOutput(patched, {**latent, "samples": plan.init})


class VCUTLoopConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTLoopConditioning",
            display_name="Loop Conditioning",
            category="vcut/loop",
            **schema_extras(io.Schema, search_aliases=["loop video", "seamless loop", "loopanimate"]),
            description=("LoopAnimate's inference recipe on SVD, training-free: 2f-1 frames, the SDSLC concat layout "
                         "(Eq. 8), the inverted-noise init latent (Eq. 5-6), loop closure (last frame anchored to "
                         "the first image, as STIV Frame Replace anchors) and an optional FGSM motion mask "
                         "(Eq. 9-10) outside which every frame stays the image. Takes what SVD_img2vid_Conditioning "
                         "outputs."),
            inputs=[
                io.Model.Input("model", tooltip=shared_inputs.ANCHORED_MODEL),
                io.Conditioning.Input("positive", tooltip="Positive conditioning from SVD_img2vid_Conditioning "
                                      "(its concat_latent_image is e(F0), the first image's latent)."),
                io.Conditioning.Input("negative", tooltip=shared_inputs.SVD_NEGATIVE),
                io.Latent.Input("latent", tooltip="The empty video latent. An even frame count is rounded UP to the "
                                "next odd one (14 -> 15 = 2f-1 with f = 8), as ALSS clips are 2f-1 frames; the extra "
                                "frame is the closing frame. 1 frame is an error."),
                io.Combo.Input("concat_layout", options=list(loop_cond.CONCAT_LAYOUTS), default="sdslc",
                               tooltip="sdslc: LoopAnimate Eq. 8, concat latent [e(F0), zeros..., e(F0)]. repeat: "
                               "SVD's own layout, e(F0) on every frame (what SVD was trained on)."),
                io.Combo.Input("init", options=list(loop_cond.INITS), default="inverted noise",
                               tooltip="inverted noise: the init latent holds e(F0) on every frame (Eq. 5-6), so the "
                               "sampler starts from the degraded image. It matters with denoise < 1; at denoise 1 "
                               "SVD's sigma_max (700) drowns the image. empty: zeros (SVD's default) except on "
                               "anchored regions."),
                io.Boolean.Input("close_loop", default=True, tooltip="Anchor the last frame to the first image so "
                                 "the video returns to its start (loop closure)."),
                io.Boolean.Input("anchor_first", default=True, tooltip="Also anchor the first frame to the image "
                                 "(it then equals the input image's latent exactly)."),
                shared_inputs.anchor_steps(),
                io.Combo.Input("mask_layout", options=list(loop_cond.MASK_LAYOUTS), default="still background",
                               tooltip="How motion_mask is laid over the frames. still background: the mask holds "
                               "on every frame. paper eq. 10: Z_M = [M0, ones..., M0], the mask only on the first "
                               "and last frames. Ignored without motion_mask."),
                io.Mask.Input("motion_mask", optional=True, tooltip="FGSM: the region allowed to move (1 = moves), "
                              "e.g. from Salient Mask. Outside it every frame stays the image. 1 mask or one per "
                              "output frame; resized (centre crop, area) to the latent. All-zero is an error."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The model with the loop anchoring."),
                io.Conditioning.Output(display_name="positive", tooltip="Positive with the loop concat layout."),
                io.Conditioning.Output(display_name="negative",
                                       tooltip="Negative with the same layout (zeros stay zeros)."),
                io.Latent.Output(display_name="latent", tooltip="Init latent with 2f-1 frames; sample this."),
            ],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, positive: Conditioning, negative: Conditioning, latent: Latent,
                concat_layout: str, init: str, close_loop: bool, anchor_first: bool, anchor_steps: float,
                mask_layout: str, motion_mask: torch.Tensor | None = None) -> io.NodeOutput:
        samples = checks.latent_samples(latent, "latent")
        frames = loop_cond.loop_frame_count(samples.shape[0])
        _, c, h, w = samples.shape
        anchoring.check_anchor_steps(anchor_steps)
        like = torch.zeros(1, c, h, w)
        image_latent = checks.image_latent_from_conditioning(positive, "positive")
        checks.check_concat_latents(positive, like, "positive")
        checks.check_concat_latents(negative, like, "negative")
        image = checks.fit_latent(image_latent, like, "positive").float()
        motion = None
        if motion_mask is not None:
            m = checks.latent_mask(motion_mask, h, w, "motion_mask",
                                   "nothing could move (the video would be the still image)")
            if m.shape[0] not in (1, frames):
                raise ValueError(f"motion_mask: {m.shape[0]} masks; give 1 or one per output frame ({frames})")
            motion = loop_cond.motion_masks(m, frames, mask_layout)
        plan = loop_cond.loop_plan(image, frames, concat_layout, init, motion, close_loop, anchor_first)
        patched = attach_plan(model, plan, anchor_steps, False, "Loop Conditioning", LOOP_ANCHOR, replace=True)
        if frames != samples.shape[0]:
            log.info("Loop Conditioning: %d frames requested, using %d (2f-1 must be odd)", samples.shape[0], frames)
        log.info("Loop Conditioning: %d frames, anchored (wholly or outside the motion mask): %s", frames,
                 plan.anchored_frames())
        return io.NodeOutput(*plan_outputs(patched, positive, negative, plan, samples.dtype))


class VCUTALSSLoopClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTALSSLoopClip",
            display_name="ALSS Loop Clip",
            category="vcut/loop",
            description=("LoopAnimate's Asymmetric Loop Sampling Strategy (Eq. 3-4): f frames forward at stride s, "
                         "then back to the start by random (seeded) steps from {2,4,6,8} summing to s(f-1). The clip "
                         "has 2f-1 frames and ends on its first frame. For loop training clips from real videos, or "
                         "to turn a generated clip into a loop."),
            inputs=[
                io.Image.Input("images", tooltip="Source frames (IMAGE batch). One clip spans s(f-1)+1 of them, "
                               "starting at start."),
                io.Int.Input("forward_frames", default=8, min=2, max=1024, tooltip="f: forward frames; the clip "
                             "has 2f-1 frames. s*(f-1) must be even."),
                io.Int.Input("stride", default=6, min=2, max=8, tooltip="s: stride of the forward frames (the paper "
                             "uses 6). 2..8 because the f-1 reverse steps, each 2-8, must sum to s(f-1)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed for the reverse steps."),
                io.Int.Input("start", default=0, min=0, max=1_000_000, tooltip="Index of F0 in the batch."),
                io.Combo.Input("if_too_short", options=["error", "reduce forward_frames"], default="error",
                               tooltip="When the batch has fewer than s(f-1)+1 frames after start: 'error' stops "
                               "with the largest f that fits; 'reduce forward_frames' uses that f instead."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The 2f-1 frame ALSS clip."),
                io.String.Output(display_name="indices", tooltip="Source indices used, comma-separated."),
            ],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, forward_frames: int, stride: int, seed: int, start: int,
                if_too_short: str = "error") -> io.NodeOutput:
        checks.image_batch(images, "images", min_frames=2)
        if not 0 <= start < images.shape[0]:
            raise ValueError(f"start: {start} is outside the batch (0..{images.shape[0] - 1})")
        alss.check_alss(forward_frames, stride)
        available = images.shape[0] - start
        f = forward_frames
        if alss.frames_needed(f, stride) > available:
            fits = alss.max_forward_frames(available, stride)
            if if_too_short == "reduce forward_frames" and fits >= 2:
                log.info("ALSS Loop Clip: %d frames after start fit f=%d, not %d", available, fits, f)
                f = fits
            else:
                hint = (f"the largest forward_frames that fits is {fits}" if fits >= 2 else
                        f"not even forward_frames=2 fits with stride {stride}; lower the stride or start")
                raise ValueError(f"images: forward_frames={forward_frames} at stride={stride} need stride x "
                                 f"(forward_frames - 1) + 1 = {alss.frames_needed(forward_frames, stride)} frames "
                                 f"from start={start}, but only {available} are there; {hint}")
        indices = alss.alss_indices(f, stride, seed, start)
        clip = images[torch.tensor(indices, dtype=torch.long)]
        return io.NodeOutput(clip, ",".join(str(i) for i in indices))


class VCUTDropClosingFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTDropClosingFrame",
            display_name="Drop Closing Frame",
            category="vcut/loop",
            description=("Saves a loop that plays seamlessly: a loop made by Loop Conditioning (close_loop), STIV "
                         "Frame Replace '0,-1' or ALSS Loop Clip ends on a copy of its first frame, and a player that "
                         "loops the file shows that frame twice (a stutter). This node drops the closing frame, so "
                         "the last frame leads into the first. Put it between VAE Decode and the save node; the log "
                         "says how close the dropped frame was to the first one."),
            inputs=[
                io.Image.Input("images", tooltip="The decoded loop, ending on its closing frame (at least 3 frames)."),
                io.Boolean.Input("drop_closing_frame", default=True, tooltip="On: drop the last frame (the copy of "
                                 "the first) for seamless looped playback. Off: pass the frames through unchanged "
                                 "(e.g. to keep last = first for editing)."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The loop without its closing frame.")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, drop_closing_frame: bool = True) -> io.NodeOutput:
        checks.image_batch(images, "images", min_frames=3)
        if not drop_closing_frame:
            return io.NodeOutput(images)
        difference = float((images[-1].float() - images[0].float()).abs().mean())
        log.info("Drop Closing Frame: dropped frame %d (mean |last - first| = %.4f; 0 = an exact copy)",
                 images.shape[0] - 1, difference)
        return io.NodeOutput(images[:-1])


NODES = [VCUTFrameReplace, VCUTLoopConditioning, VCUTALSSLoopClip, VCUTDropClosingFrame]
