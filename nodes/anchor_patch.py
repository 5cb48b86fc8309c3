"""Frame anchoring (STIV frame replacement, training-free) as wrappers on a cloned ModelPatcher.

Used by STIV Frame Replace, Loop Conditioning and Video Extend; the plan (anchors, keep mask) comes from
../anchor/plans.py. Anchoring is a model patch, not a LATENT noise_mask, because a noise_mask is shared by both CFG
branches and cannot give JIT-CFG's unconditional branch an un-anchored input. A feature of the sampling-run layer
(run.py): AnchorConfig attached to the clone (a tuple of them under FRAME_REPLACE, which stacks), one AnchorRun per
sampling run (the sampler's noise and schedule; its `finish` sets the anchored frames of the finished latent to the
anchor, the replacement at sigma = 0, equal bit for bit, or at the last sigma of a run that ends with leftover
noise), and one APPLY_MODEL wrapper per key: per model call it sees every CFG branch's rows
(transformer_options["cond_or_uncond"]) and, under core context windows, the window's frames; it replaces the
anchored frames of the input by anchor + sigma * noise (the sampler's own initial noise, as ComfyUI's inpainting
uses it; for a sampler that adds none, the noise its latent carries from an earlier part of the schedule) and those
of the denoised output by the clean anchor, on the steps the layer's step tracker counts as anchored. It always
calls through to the executor it was given, so it composes with VCUT Patch Model (attn2 object patches), Cut Step
Scheduler (runs [cond, None] after the cut step), the feature cache and each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrapperExecutor, WrappersMP

from ..anchor import anchoring
from ..anchor.plans import AnchorPlan
from .checks import Conditioning
from .log import log
from .patch_layer import FRAME_REPLACE, LOOP_ANCHOR, VIDEO_EXTEND, ModelPatch
from .run import FeatureConfig, FeatureState, SamplingRun, current_run, feature_config


@dataclass(frozen=True, eq=False)
class AnchorConfig(FeatureConfig):
    """One anchoring's settings, attached to the clone: the plan's anchors and keep mask in the model's latent
    space before process_in, the fraction of steps anchored, JIT-CFG, and the node's name for messages.

    jit_cfg: STIV's joint image-text CFG -- unconditional rows get no anchors and a zeroed image (concat latent and
    CLIP embedding); their denoised output is still set to the anchor on anchored frames so the guided result there
    is exactly the anchor (guidance has nothing to do on a fixed frame)."""
    anchor: torch.Tensor
    keep: torch.Tensor
    fraction: float
    jit_cfg: bool
    label: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    def new_state(self, run: SamplingRun) -> AnchorRun:
        noise = run.noise
        expected = tuple(self.anchor.shape)
        if tuple(noise.shape) != expected:
            raise ValueError(f"{self.label}: the sampler's latent is {tuple(noise.shape)} but the anchors were built "
                             f"for {expected} (frames, channels, h, w); sample the LATENT that this node outputs")
        latent_format = run.guider.model_patcher.model.latent_format
        anchor = latent_format.process_in(self.anchor.to(device=noise.device, dtype=torch.float32))
        noise = noise.to(torch.float32)
        start, end = float(run.sigmas[0]), float(run.sigmas[-1])
        added_noise = bool(torch.any(noise))
        if not added_noise and start > 0:
            # No noise added (KSamplerAdvanced's add_noise disabled): the latent carries its noise, e.g. the leftover
            # of an earlier segment of the schedule, whose anchored frames are anchor + start * noise (eq. of
            # noise_level_anchor). Recover that noise, so the anchored frames go on from where the latent is.
            latent = latent_format.process_in(run.latent.to(device=noise.device, dtype=torch.float32))
            noise = (latent - anchor) / start
        frames = [i for i in range(expected[0]) if float(self.keep[i].max()) > 0]
        schedule = anchoring.AnchorSchedule(run.sigmas, self.fraction)
        if not schedule.whole_schedule and schedule.anchored_steps and (end > 0 or not added_noise):
            log.warning("%s: this sampler runs part of a schedule (it %s), and anchor_steps %g anchors %d of this "
                        "part's %d steps, not that fraction of the whole schedule; anchor_steps 1.0 splits exactly",
                        self.label, "ends with leftover noise" if end > 0 else "adds no noise",
                        self.fraction, schedule.anchored_steps, schedule.total_steps)
        state = AnchorRun(self, anchor, self.keep.to(noise.device), noise, schedule, frames, end, latent_format)
        # JIT-CFG's unconditional branch is the guider's negative, told by the uuids ComfyUI's sampler gave its
        # entries: cond_or_uncond is the index in the guider's list, and DualCFGGuider lists [negative, middle,
        # positive], so "index 0 is conditional" would zero the positive's image there.
        negative = (getattr(run.guider, "conds", None) or {}).get("negative") or []
        state.negative = frozenset(c["uuid"] for c in negative if isinstance(c, dict) and c.get("uuid") is not None)
        return state


class AnchorRun(FeatureState):
    """What one sampling run of one anchoring needs, in the model's latent space, on the sampler's device."""

    def __init__(self, config: AnchorConfig, anchor: torch.Tensor, keep: torch.Tensor, noise: torch.Tensor,
                 schedule: anchoring.AnchorSchedule, frames: list[int], end: float, latent_format: Any) -> None:
        self.config, self.anchor, self.keep, self.noise, self.schedule = config, anchor, keep, noise, schedule
        self.frames, self.end, self.latent_format = frames, end, latent_format
        self.calls = 0
        self.negative: frozenset = frozenset()  # uuids of the guider's negative conditioning (JIT-CFG's branch)

    def finish(self, latent: torch.Tensor) -> torch.Tensor:
        if not self.schedule.whole_schedule:
            return latent
        keep = self.config.keep.to(latent.device)
        if self.end > 0:  # a schedule that ends with leftover noise: the replacement at its last sigma
            noisy = anchoring.noise_level_anchor(self.anchor, self.end, self.noise)
            return anchoring.blend(latent, self.latent_format.process_out(noisy).to(latent.device), keep)
        # The replacement at sigma = 0: the finished anchored frames are the anchor itself.
        return anchoring.blend(latent, self.config.anchor.to(latent.device), keep)

    def report(self) -> str:
        return (f"{self.config.label}: frames {', '.join(map(str, self.frames))} pinned for "
                f"{self.schedule.anchored_steps} of {self.schedule.total_steps} steps ({self.calls} model calls)")

    def active(self, run: SamplingRun, sigma: torch.Tensor) -> bool:
        """Anchored steps are 1..anchored_steps of the run's step tracker (every evaluation of those steps)."""
        if self.schedule.anchored_steps == 0:
            return False
        return self.schedule.whole_schedule or run.step_at(sigma) <= self.schedule.anchored_steps


def make_apply_model(key: str) -> Callable[..., torch.Tensor]:
    """The APPLY_MODEL wrapper of the anchorings attached under `key` (several for a stacking key, applied as
    nested wrappers would: inputs in the order attached, outputs in reverse). Per call it sees every CFG branch's
    rows (transformer_options["cond_or_uncond"]) and, under core context windows, the window's frames."""

    def apply_model(executor: WrapperExecutor, x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                    c_crossattn: torch.Tensor | None = None, control: dict[str, Any] | None = None,
                    transformer_options: dict[str, Any] | None = None, **kwargs: Any) -> torch.Tensor:
        transformer_options = {} if transformer_options is None else transformer_options
        run = current_run(transformer_options)
        states = [] if run is None else run.states.get(key, [])
        if not states:  # called outside a sampling run of this patch (nothing to anchor to)
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        branches = list(transformer_options.get("cond_or_uncond", [0]))
        sigma = transformer_options.get("sigmas", t)
        rows = x.shape[0] // len(branches) if x.shape[0] % len(branches) == 0 else -1
        part = run.part_key(transformer_options, rows, states[0].config.label)
        if part is None or tuple(x.shape[1:]) != tuple(states[0].anchor.shape[1:]):
            if part is not None:
                raise ValueError(f"{states[0].config.label}: model input {tuple(x.shape)} does not hold "
                                 f"{len(branches)} branch(es) of frames {tuple(states[0].anchor.shape[1:])}")
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        frames = list(part.window) if part.window is not None else slice(None)
        uuids = transformer_options.get("uuids") or []
        if uuids and len(uuids) == len(branches):  # a guider without a negative has no unconditional branch
            conditional = [u not in states[0].negative for u in uuids]
        else:  # no uuids: ComfyUI's COND index 0
            conditional = [b == 0 for b in branches]
        done = []
        for state in states:
            anchored = [c or not state.config.jit_cfg for c in conditional]
            active = state.active(run, sigma)
            # x's device, not the run's: MultiGPU CFG Split (ComfyUI 0.30+) runs some branches on another GPU
            keep = state.keep[frames].to(x.device)
            anchor_rows = state.anchor[frames].to(x.device, x.dtype).repeat(len(branches), 1, 1, 1)
            if active:
                state.calls += 1
                keep_in = torch.cat([keep if a else torch.zeros_like(keep) for a in anchored])
                noise_rows = state.noise[frames].to(x.device, x.dtype).repeat(len(branches), 1, 1, 1)
                x = anchoring.blend(x, anchoring.noise_level_anchor(anchor_rows, t, noise_rows), keep_in)
            if state.config.jit_cfg and not all(conditional):
                c_concat = _zero_branches(c_concat, conditional)
                c_crossattn = _zero_branches(c_crossattn, conditional)
            done.append((active, anchor_rows, keep))
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        for active, anchor_rows, keep in reversed(done):
            if active:
                out = anchoring.blend(out, anchor_rows.to(out.dtype), keep.repeat(len(branches), 1, 1, 1))
        return out
    return apply_model


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


APPLY_MODEL = {key: make_apply_model(key) for key in (FRAME_REPLACE, LOOP_ANCHOR, VIDEO_EXTEND)}


def attach_plan(model: ModelPatcher, plan: AnchorPlan, fraction: float, jit_cfg: bool, name: str, key: str,
                replace: bool = False) -> ModelPatcher:
    """A clone of `model` with the plan's anchoring attached (the input model is unchanged). replace: drop what an
    earlier node of the same kind attached under `key` (a chained Video Extend anchors to its own previous segment
    only); otherwise anchorings stack (two STIV Frame Replace nodes anchor both sets of frames)."""
    patched = ModelPatch(model)
    earlier = () if replace else tuple(feature_config(model, key) or ())
    config = AnchorConfig(plan.anchors, plan.keep, fraction, jit_cfg, name)
    configs = earlier + ((config,) if float(plan.keep.max()) > 0 else ())
    patched.set_feature(key, configs or None, {WrappersMP.APPLY_MODEL: APPLY_MODEL[key]})
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
