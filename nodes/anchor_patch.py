"""Frame anchoring (STIV frame replacement, training-free) as wrappers on a cloned ModelPatcher.

Used by STIV Frame Replace, Loop Conditioning and Video Extend; the plan (anchors, keep mask) comes from
../anchor/plans.py. Anchoring is a model patch, not a LATENT noise_mask, because a noise_mask is shared by both CFG
branches and cannot give JIT-CFG's unconditional branch an un-anchored input. Two wrappers:
- OUTER_SAMPLE: per sampling run, takes the sampler's noise and sigma schedule and stores them in the run's
  transformer_options (the guider's per-run copy of the model options; nothing is kept on this object, which every
  clone of the model shares), and at the end sets the anchored frames of the finished latent to the anchor (the
  replacement at sigma = 0, which makes them equal bit for bit);
- APPLY_MODEL: per model call, sees every CFG branch's rows (transformer_options["cond_or_uncond"]); it replaces
  the anchored frames of the input by anchor + sigma * noise (the sampler's own initial noise, as ComfyUI's
  inpainting uses it) and those of the denoised output by the clean anchor.
Both always call through to the executor they were given, so they compose with VCUT Patch Model (attn2 object
patches), Cut Step Scheduler (CALC_COND_BATCH wrapper that runs [cond, None] after the cut step) and each other.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrapperExecutor, WrappersMP

from ..anchor import anchoring
from ..anchor.plans import AnchorPlan
from .checks import Conditioning
from .patch_layer import ModelPatch, Wrappers

if TYPE_CHECKING:
    from comfy.samplers import Sampler


@dataclass(frozen=True)
class AnchorRun:
    """What one sampling run needs, in the model's latent space, on the sampler's device."""
    anchor: torch.Tensor
    keep: torch.Tensor
    noise: torch.Tensor
    schedule: anchoring.AnchorSchedule


class FrameAnchorPatch:
    """Frame replacement on SVD as model wrappers (see the module docstring). Holds only the plan's anchors and
    keep mask and the settings; each sampling run's state lives in that run's transformer_options[self.option].

    jit_cfg: STIV's joint image-text CFG -- unconditional rows get no anchors and a zeroed image (concat latent and
    CLIP embedding); their denoised output is still set to the anchor on anchored frames so the guided result there
    is exactly the anchor (guidance has nothing to do on a fixed frame)."""

    def __init__(self, plan: AnchorPlan, fraction: float, jit_cfg: bool, name: str) -> None:
        self.anchor, self.keep = plan.anchors, plan.keep
        self.fraction, self.jit_cfg, self.name = fraction, jit_cfg, name
        self.option = f"vcut_anchor_run_{uuid.uuid4().hex}"  # one name per patch: chained patches do not collide

    def wrappers(self) -> Wrappers:
        return {WrappersMP.OUTER_SAMPLE: self.outer_sample, WrappersMP.APPLY_MODEL: self.apply_model}

    def outer_sample(self, executor: WrapperExecutor, noise: torch.Tensor, latent_image: torch.Tensor,
                     sampler: Sampler, sigmas: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        expected = tuple(self.anchor.shape)
        if tuple(noise.shape) != expected:
            raise ValueError(f"{self.name}: the sampler's latent is {tuple(noise.shape)} but the anchors were built "
                             f"for {expected} (frames, channels, h, w); sample the LATENT that this node outputs")
        guider = executor.class_obj
        latent_format = guider.model_patcher.model.latent_format
        anchor = latent_format.process_in(self.anchor.to(device=noise.device, dtype=torch.float32))
        schedule = anchoring.AnchorSchedule(sigmas, self.fraction)
        # guider.model_options is CFGGuider.sample's per-run copy; inner_sample copies it into every model call
        options = guider.model_options.setdefault("transformer_options", {})
        options[self.option] = AnchorRun(anchor, self.keep.to(noise.device), noise.to(torch.float32), schedule)
        try:
            out = executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
        finally:
            options.pop(self.option, None)
        if schedule.whole_schedule:
            # The replacement at sigma = 0: the finished anchored frames are the anchor itself.
            out = anchoring.blend(out, self.anchor.to(out.device), self.keep.to(out.device))
        return out

    def apply_model(self, executor: WrapperExecutor, x: torch.Tensor, t: torch.Tensor,
                    c_concat: torch.Tensor | None = None, c_crossattn: torch.Tensor | None = None,
                    control: dict[str, Any] | None = None, transformer_options: dict[str, Any] | None = None,
                    **kwargs: Any) -> torch.Tensor:
        transformer_options = {} if transformer_options is None else transformer_options
        run = transformer_options.get(self.option)
        if run is None:  # called outside a sampling run of this patch (nothing to anchor to)
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        branches = list(transformer_options.get("cond_or_uncond", [0]))
        frames = run.anchor.shape[0]
        if x.shape[0] != frames * len(branches) or tuple(x.shape[1:]) != tuple(run.anchor.shape[1:]):
            raise ValueError(f"{self.name}: model input {tuple(x.shape)} does not hold {len(branches)} branch(es) of "
                             f"{frames} frames {tuple(run.anchor.shape[1:])}")
        conditional = [b == 0 for b in branches]
        anchored = [c or not self.jit_cfg for c in conditional]
        active = run.schedule.active(float(t.max()))
        # x's device, not the run's: MultiGPU CFG Split (ComfyUI 0.30+) runs some branches on another GPU
        keep = run.keep.to(x.device)
        anchor_rows = run.anchor.to(x.device, x.dtype).repeat(len(branches), 1, 1, 1)
        if active:
            keep_in = torch.cat([keep if a else torch.zeros_like(keep) for a in anchored])
            noise_rows = run.noise.to(x.device, x.dtype).repeat(len(branches), 1, 1, 1)
            x = anchoring.blend(x, anchoring.noise_level_anchor(anchor_rows, t, noise_rows), keep_in)
        if self.jit_cfg and not all(conditional):
            c_concat = _zero_branches(c_concat, conditional)
            c_crossattn = _zero_branches(c_crossattn, conditional)
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if active:
            out = anchoring.blend(out, anchor_rows.to(out.dtype), keep.repeat(len(branches), 1, 1, 1))
        return out


def _zero_branches(tensor: torch.Tensor | None, conditional: list[bool]) -> torch.Tensor | None:
    """Copy of a batched cond tensor with the rows of every non-conditional branch set to zero."""
    if tensor is None or tensor.shape[0] % len(conditional):
        return tensor
    rows = tensor.shape[0] // len(conditional)
    out = tensor.clone()
    for i, is_cond in enumerate(conditional):
        if not is_cond:
            out[i * rows:(i + 1) * rows] = 0
    return out


def attach_plan(model: ModelPatcher, plan: AnchorPlan, fraction: float, jit_cfg: bool, name: str, key: str,
                replace: bool = False) -> ModelPatcher:
    """A clone of `model` with the plan's anchoring attached (the input model is unchanged). replace: first drop
    what an earlier node of the same kind attached under `key` (a chained Video Extend anchors to its own previous
    segment only); otherwise anchorings stack (two STIV Frame Replace nodes anchor both sets of frames)."""
    patched = ModelPatch(model)
    if replace:
        patched.remove_wrappers(key)
    if float(plan.keep.max()) > 0:
        patched.add_wrappers(key, FrameAnchorPatch(plan, fraction, jit_cfg, name).wrappers())
    return patched.patcher


def with_concat(conditioning: Conditioning, concat: torch.Tensor | None) -> Conditioning:
    """A copy of SVD conditioning whose concat_latent_image is the plan's `concat` layout (an all-zero image latent,
    as SVD_img2vid_Conditioning's negative has, stays zeros); None keeps the conditioning as it is. The node has
    checked the latents it replaces (checks.check_concat_latents)."""
    if concat is None:
        return conditioning
    out = []
    for entry in conditioning:
        d = dict(entry[1])
        z = d.get("concat_latent_image")
        if z is not None:
            d["concat_latent_image"] = (torch.zeros_like(concat) if torch.count_nonzero(z) == 0 else concat).to(z.dtype)
        out.append([entry[0], d])
    return out


def plan_outputs(patched: ModelPatcher, positive: Conditioning, negative: Conditioning, plan: AnchorPlan,
                 dtype: torch.dtype) -> tuple:
    """What a node that attaches a plan returns: the patched model, positive and negative with the plan's concat
    layout, and the plan's init latent to sample."""
    return (patched, with_concat(positive, plan.concat), with_concat(negative, plan.concat),
            {"samples": plan.init.to(dtype)})
