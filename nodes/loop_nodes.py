"""ComfyUI glue for frame anchoring and loops: STIV Frame Replace, Loop Conditioning, ALSS Loop Clip.

The math is in ../loop (anchoring.py, conditioning.py, alss.py). Anchoring is a model patch, not a LATENT
noise_mask, because a noise_mask is shared by both CFG branches and cannot give JIT-CFG's unconditional branch an
un-anchored input; the patch is two wrappers on a cloned ModelPatcher:
- OUTER_SAMPLE: per sampling run, takes the sampler's noise and sigma schedule, and at the end sets the anchored
  frames of the finished latent to the anchor (the replacement at sigma = 0, which makes them equal bit for bit);
- APPLY_MODEL: per model call, sees every CFG branch's rows (transformer_options["cond_or_uncond"]); it replaces
  the anchored frames of the input by anchor + sigma * noise (the sampler's own initial noise, as ComfyUI's
  inpainting uses it) and those of the denoised output by the clean anchor.
Both always call through to the executor they were given, so they compose with VCUT Patch Model (attn2 object
patches) and Cut Step Scheduler (CALC_COND_BATCH wrapper that runs [cond, None] after the cut step).
"""
from __future__ import annotations

import logging

import torch

import comfy.patcher_extension
import comfy.utils
from comfy_api.latest import io

from ..loop import alss
from ..loop import anchoring as anchor_math
from ..loop import conditioning as loop_cond

FRAME_REPLACE_KEY = "vcut_frame_replace"
LOOP_ANCHOR_KEY = "vcut_loop_anchor"


class _AnchorRun:
    """What one sampling run needs, in the model's latent space, on the sampler's device."""

    def __init__(self, anchor, keep, noise, schedule):
        self.anchor, self.keep, self.noise, self.schedule = anchor, keep, noise, schedule


class FrameAnchorPatch:
    """Frame replacement on SVD as model wrappers (see the module docstring).

    anchor: [frames, C, h, w] in LATENT space (what VAE Encode gives); keep: [frames, 1, h, w], 1 = anchored.
    jit_cfg: STIV's joint image-text CFG -- unconditional rows get no anchors and a zeroed image (concat latent and
    CLIP embedding); their denoised output is still set to the anchor on anchored frames so the guided result there
    is exactly the anchor (guidance has nothing to do on a fixed frame)."""

    def __init__(self, anchor: torch.Tensor, keep: torch.Tensor, fraction: float, jit_cfg: bool, name: str):
        self.anchor, self.keep = anchor, keep
        self.fraction, self.jit_cfg, self.name = fraction, jit_cfg, name
        self.run: _AnchorRun | None = None

    def attach(self, model, key: str):
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, key, self.outer_sample)
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, self.apply_model)

    def outer_sample(self, executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
        expected = tuple(self.anchor.shape)
        if tuple(noise.shape) != expected:
            raise ValueError(f"{self.name}: the sampler's latent is {tuple(noise.shape)} but the anchors were built "
                             f"for {expected} (frames, channels, h, w); sample the LATENT that this node outputs")
        guider = executor.class_obj
        latent_format = guider.model_patcher.model.latent_format
        anchor = latent_format.process_in(self.anchor.to(device=noise.device, dtype=torch.float32))
        schedule = anchor_math.AnchorSchedule(sigmas, self.fraction)
        previous = self.run
        self.run = _AnchorRun(anchor, self.keep.to(noise.device), noise.to(torch.float32), schedule)
        try:
            out = executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
        finally:
            self.run = previous
        if schedule.whole_schedule:
            # The replacement at sigma = 0: the finished anchored frames are the anchor itself.
            out = anchor_math.blend(out, self.anchor.to(out.device), self.keep.to(out.device))
        return out

    def apply_model(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                    **kwargs):
        run = self.run
        if run is None:  # called outside a sampling run (nothing to anchor to)
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        branches = list(transformer_options.get("cond_or_uncond", [0]))
        frames = run.anchor.shape[0]
        if x.shape[0] != frames * len(branches) or tuple(x.shape[1:]) != tuple(run.anchor.shape[1:]):
            raise ValueError(f"{self.name}: model input {tuple(x.shape)} does not hold {len(branches)} branch(es) of "
                             f"{frames} frames {tuple(run.anchor.shape[1:])}")
        conditional = [b == 0 for b in branches]
        anchored = [c or not self.jit_cfg for c in conditional]
        active = run.schedule.active(float(t.max()))
        anchor_rows = run.anchor.to(x.dtype).repeat(len(branches), 1, 1, 1)
        if active:
            keep_in = torch.cat([run.keep if a else torch.zeros_like(run.keep) for a in anchored])
            noise_rows = run.noise.to(x.dtype).repeat(len(branches), 1, 1, 1)
            x = anchor_math.blend(x, anchor_math.noise_level_anchor(anchor_rows, t, noise_rows), keep_in)
        if self.jit_cfg and not all(conditional):
            c_concat = _zero_branches(c_concat, conditional)
            c_crossattn = _zero_branches(c_crossattn, conditional)
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if active:
            out = anchor_math.blend(out, anchor_rows.to(out.dtype), run.keep.repeat(len(branches), 1, 1, 1))
        return out


def _zero_branches(tensor, conditional: list[bool]):
    """Copy of a batched cond tensor with the rows of every non-conditional branch set to zero."""
    if tensor is None or tensor.shape[0] % len(conditional):
        return tensor
    rows = tensor.shape[0] // len(conditional)
    out = tensor.clone()
    for i, is_cond in enumerate(conditional):
        if not is_cond:
            out[i * rows:(i + 1) * rows] = 0
    return out


def _latent_samples(latent, name: str, min_frames: int = 1) -> torch.Tensor:
    """The samples of a LATENT input, checked: [frames, 4, h, w] with at least `min_frames` frames."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None or samples.ndim != 4 or samples.shape[0] == 0:
        raise ValueError(f"{name}: expected an SVD video latent [frames, 4, h, w] (e.g. from "
                         f"SVD_img2vid_Conditioning), got {None if samples is None else tuple(samples.shape)}")
    if samples.shape[0] < min_frames:
        raise ValueError(f"{name}: {samples.shape[0]} frame(s); a video to anchor needs at least {min_frames} frames")
    return samples


def _image_latent_from_conditioning(conditioning, name: str) -> torch.Tensor:
    for entry in conditioning or []:
        z = entry[1].get("concat_latent_image") if len(entry) > 1 else None
        if z is not None:
            if z.ndim != 4:
                raise ValueError(f"{name}: concat_latent_image has shape {tuple(z.shape)}, expected [1, 4, h, w]")
            return z[:1]
    raise ValueError(f"{name}: no concat_latent_image in this conditioning; connect the positive output of "
                     f"SVD_img2vid_Conditioning")


def _fit_latent(z: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """Resize an anchor latent to the video latent's size the way SVD's extra_conds resizes its concat latent."""
    if z.ndim != 4 or z.shape[1] != like.shape[1]:
        raise ValueError(f"{name}: latent {tuple(z.shape)} does not have the video's {like.shape[1]} channels")
    if torch.isnan(z).any():
        raise ValueError(f"{name}: the latent contains NaN values")
    z = z.to(like.dtype)
    if z.shape[-2:] != like.shape[-2:]:
        z = comfy.utils.common_upscale(z, like.shape[-1], like.shape[-2], "bilinear", "center")
    return z


def _check_mask_not_empty(m: torch.Tensor, name: str, what: str) -> None:
    if float(m.max()) <= 0.0:
        raise ValueError(f"{name}: the mask is all zeros, so {what}; leave it unconnected or mark a region")


class STIVFrameReplace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTFrameReplace",
            display_name="STIV Frame Replace",
            category="vcut/loop",
            description=("Anchors chosen frames of an SVD video to an image latent (STIV's frame replacement, "
                         "training-free): at each step the anchored frames of the model input are the anchor at the "
                         "current noise level and the denoised anchored frames are the clean anchor, so the finished "
                         "anchored frames equal the anchor exactly. JIT-CFG keeps anchors and image out of the "
                         "unconditional branch. Connect the LATENT output to the sampler."),
            inputs=[
                io.Model.Input("model", tooltip="The SVD model to patch (it is cloned, the input is unchanged)."),
                io.Latent.Input("latent", tooltip="The video latent to sample ([frames, 4, h, w], e.g. from "
                                "SVD_img2vid_Conditioning). Sets the frame count and size; the anchors are written "
                                "into the output latent."),
                io.String.Input("frames", default="0", tooltip="Frames to anchor, comma-separated: '0' (first), "
                                "'0,-1' (first and last), '0,12,24'. Negative counts from the end. Out-of-range or "
                                "repeated frames are an error."),
                io.Float.Input("anchor_steps", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the "
                               "sampling steps that are anchored, from the first. 1.0: all steps, and the anchored "
                               "frames of the result equal the anchor exactly; less lets them drift at the end; 0 only "
                               "writes the anchors into the output latent."),
                io.Boolean.Input("jit_cfg", default=True, tooltip="STIV's joint image-text CFG: only the "
                                 "conditional branch sees the anchors; the unconditional branch sees neither anchors "
                                 "(it gets the sampler's own latent on anchored frames) nor the image (concat latent "
                                 "and CLIP embedding zeroed). Off: both branches are anchored."),
                io.Conditioning.Input("positive", optional=True, tooltip="SVD positive conditioning; its image "
                                      "latent (concat_latent_image) is the anchor when no anchor_latent or "
                                      "anchor_image is given."),
                io.Latent.Input("anchor_latent", optional=True, tooltip="Anchor latent(s): 1 frame (used for every "
                                "listed frame) or one per listed frame, in order. Resized to the video like SVD does."),
                io.Image.Input("anchor_image", optional=True, tooltip="Anchor image(s) (needs vae): 1 or one per "
                               "listed frame. Resized (centre crop, bilinear) to the video size like "
                               "SVD_img2vid_Conditioning, then encoded."),
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
    def execute(cls, model, latent, frames, anchor_steps, jit_cfg, positive=None, anchor_latent=None,
                anchor_image=None, vae=None, mask=None) -> io.NodeOutput:
        samples = _latent_samples(latent, "latent", min_frames=2)
        if torch.isnan(samples).any():
            raise ValueError("latent: the latent contains NaN values")
        n, _, h, w = samples.shape
        frame_list = anchor_math.parse_frame_list(frames, n, "frames")
        anchor_math.anchored_step_count(anchor_steps, 1)  # validates the fraction
        if anchor_latent is not None:
            anchors = _fit_latent(_latent_samples(anchor_latent, "anchor_latent"), samples, "anchor_latent")
        elif anchor_image is not None:
            if vae is None:
                raise ValueError("anchor_image: connect a vae to encode it (or give anchor_latent)")
            if anchor_image.ndim != 4 or anchor_image.shape[0] == 0:
                raise ValueError(f"anchor_image: expected an IMAGE batch [B, H, W, C], got {tuple(anchor_image.shape)}")
            pixels = comfy.utils.common_upscale(anchor_image.movedim(-1, 1), w * 8, h * 8, "bilinear",
                                                "center").movedim(1, -1)
            anchors = _fit_latent(vae.encode(pixels[:, :, :, :3]), samples, "anchor_image")
        elif positive is not None:
            anchors = _fit_latent(_image_latent_from_conditioning(positive, "positive"), samples, "positive")
        else:
            raise ValueError("STIV Frame Replace: give an anchor (anchor_latent, anchor_image + vae, or the SVD "
                             "positive conditioning whose image latent is used)")
        if anchors.shape[0] not in (1, len(frame_list)):
            raise ValueError(f"anchor: {anchors.shape[0]} anchors for {len(frame_list)} listed frames; give 1 (used "
                             f"for every listed frame) or exactly {len(frame_list)}")
        spatial = None
        if mask is not None:
            spatial = anchor_math.mask_to_latent(mask, h, w, "mask")
            if spatial.shape[0] == n and len(frame_list) != n:
                spatial = spatial[frame_list]
            elif spatial.shape[0] not in (1, len(frame_list)):
                raise ValueError(f"mask: {spatial.shape[0]} masks; give 1, one per listed frame "
                                 f"({len(frame_list)}) or one per video frame ({n})")
            _check_mask_not_empty(spatial, "mask", "nothing would be anchored")
        keep = anchor_math.frame_keep_mask(n, frame_list, h, w, spatial)
        placed = anchor_math.place_anchors(n, frame_list, anchors.float())
        patched = model.clone()
        FrameAnchorPatch(placed, keep, anchor_steps, jit_cfg, "STIV Frame Replace").attach(patched, FRAME_REPLACE_KEY)
        out_latent = dict(latent)
        out_latent["samples"] = anchor_math.blend(samples, placed.to(samples.dtype), keep)
        logging.info("STIV Frame Replace: anchoring frames %s of %d (jit_cfg=%s, anchor_steps=%.2f)",
                     frame_list, n, jit_cfg, anchor_steps)
        return io.NodeOutput(patched, out_latent)


class LoopConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTLoopConditioning",
            display_name="Loop Conditioning",
            category="vcut/loop",
            description=("LoopAnimate's inference recipe on SVD, training-free: 2f-1 frames, the SDSLC concat layout "
                         "(Eq. 8), the inverted-noise init latent (Eq. 5-6), loop closure (last frame anchored to "
                         "the first image, as STIV Frame Replace anchors) and an optional FGSM motion mask "
                         "(Eq. 9-10) outside which every frame stays the image. Takes what SVD_img2vid_Conditioning "
                         "outputs."),
            inputs=[
                io.Model.Input("model", tooltip="The SVD model (cloned and patched for the anchoring)."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning from SVD_img2vid_Conditioning "
                                      "(its concat_latent_image is e(F0), the first image's latent)."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning from SVD_img2vid_Conditioning."),
                io.Latent.Input("latent", tooltip="The empty video latent. An even frame count is rounded UP to the "
                                "next odd one (14 -> 15 = 2f-1 with f = 8), as ALSS clips are 2f-1 frames; the extra "
                                "frame is the closing frame. 1 frame is an error."),
                io.Combo.Input("concat_layout", options=list(loop_cond.CONCAT_LAYOUTS), default="sdslc",
                               tooltip="sdslc: LoopAnimate Eq. 8, concat latent [e(F0), zeros..., e(F0)]. repeat: "
                               "SVD's own layout, e(F0) on every frame (what SVD was trained on)."),
                io.Combo.Input("init", options=["inverted noise", "empty"], default="inverted noise",
                               tooltip="inverted noise: the init latent holds e(F0) on every frame (Eq. 5-6), so the "
                               "sampler starts from the degraded image. It matters with denoise < 1; at denoise 1 "
                               "SVD's sigma_max (700) drowns the image. empty: zeros (SVD's default) except on "
                               "anchored regions."),
                io.Boolean.Input("close_loop", default=True, tooltip="Anchor the last frame to the first image so "
                                 "the video returns to its start (loop closure)."),
                io.Boolean.Input("anchor_first", default=True, tooltip="Also anchor the first frame to the image "
                                 "(it then equals the input image's latent exactly)."),
                io.Float.Input("anchor_steps", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the "
                               "sampling steps that are anchored. 1.0 makes anchored regions exact."),
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
    def execute(cls, model, positive, negative, latent, concat_layout, init, close_loop, anchor_first,
                anchor_steps, mask_layout, motion_mask=None) -> io.NodeOutput:
        samples = _latent_samples(latent, "latent")
        frames = loop_cond.loop_frame_count(samples.shape[0])
        _, c, h, w = samples.shape
        anchor_math.anchored_step_count(anchor_steps, 1)
        like = torch.zeros(1, c, h, w)
        image = _fit_latent(_image_latent_from_conditioning(positive, "positive"), like, "positive").float()

        def relayout(conditioning):
            out = []
            for entry in conditioning:
                d = dict(entry[1])
                if d.get("concat_latent_image") is not None:
                    z = _fit_latent(d["concat_latent_image"][:1], like, "concat_latent_image")
                    d["concat_latent_image"] = loop_cond.concat_layout(z, frames, concat_layout)
                out.append([entry[0], d])
            return out

        motion = None
        if motion_mask is not None:
            m = anchor_math.mask_to_latent(motion_mask, h, w, "motion_mask")
            if m.shape[0] not in (1, frames):
                raise ValueError(f"motion_mask: {m.shape[0]} masks; give 1 or one per output frame ({frames})")
            _check_mask_not_empty(m, "motion_mask", "nothing could move (the video would be the still image)")
            motion = loop_cond.motion_masks(m, frames, mask_layout)
        keep = loop_cond.loop_keep_mask(frames, h, w, motion, close_loop, anchor_first)
        image_frames = loop_cond.inverted_noise_init(image, frames)
        if init == "inverted noise":
            base = image_frames.clone()
        elif init == "empty":
            base = torch.zeros(frames, c, h, w)
        else:
            raise ValueError(f"init must be 'inverted noise' or 'empty', got '{init}'")
        out_latent = {"samples": anchor_math.blend(base, image_frames, keep).to(samples.dtype)}
        patched = model.clone()
        if float(keep.max()) > 0:
            FrameAnchorPatch(image_frames, keep, anchor_steps, False, "Loop Conditioning").attach(patched,
                                                                                                 LOOP_ANCHOR_KEY)
        if frames != samples.shape[0]:
            logging.info("Loop Conditioning: %d frames requested, using %d (2f-1 must be odd)",
                         samples.shape[0], frames)
        return io.NodeOutput(patched, relayout(positive), relayout(negative), out_latent)


class ALSSLoopClip(io.ComfyNode):
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
    def execute(cls, images, forward_frames, stride, seed, start, if_too_short="error") -> io.NodeOutput:
        if images.ndim != 4 or images.shape[0] < 2:
            raise ValueError(f"images: need a batch of at least 2 frames [B, H, W, C], got {tuple(images.shape)}")
        if torch.isnan(images).any():
            raise ValueError("images: the batch contains NaN values")
        if not 0 <= start < images.shape[0]:
            raise ValueError(f"start: {start} is outside the batch (0..{images.shape[0] - 1})")
        alss.check_alss(forward_frames, stride)
        available = images.shape[0] - start
        f = forward_frames
        if alss.frames_needed(f, stride) > available:
            fits = alss.max_forward_frames(available, stride)
            if if_too_short == "reduce forward_frames" and fits >= 2:
                logging.info("ALSS Loop Clip: %d frames after start fit f=%d, not %d", available, fits, f)
                f = fits
            else:
                hint = (f"the largest forward_frames that fits is {fits}" if fits >= 2 else
                        f"not even f=2 fits with stride {stride}; lower the stride or start")
                raise ValueError(f"images: f={forward_frames}, s={stride} needs s(f-1)+1 = "
                                 f"{alss.frames_needed(forward_frames, stride)} frames from start={start}, but only "
                                 f"{available} are there; {hint}")
        indices = alss.alss_indices(f, stride, seed, start)
        clip = images[torch.tensor(indices, dtype=torch.long)]
        return io.NodeOutput(clip, ",".join(str(i) for i in indices))


NODES = [STIVFrameReplace, LoopConditioning, ALSSLoopClip]
