"""SVD's UNet as diffusers builds it (UNetSpatioTemporalConditionModel): the second, independent SVD that the cores
are checked against in the core tests and measured on in the benchmarks (imported as `vcut.bench.diffusers_reference`,
see pack_import.py). Not part of the pack: its nodes patch ComfyUI's own UNet through object patches and wrappers.

- VCUT applied in place (`patch_unet_`): cut/attention.py's plan, each attn2 module swapped for its stand-in.
- The UNet Feature Cache's partial step (`step`, DeepCache Sec. 3.2, branches counted as in cache/deepcache.py):
  diffusers' UNet walked layer by layer as ComfyUI's flat input / output layer lists, the full step equal to
  unet(...), a partial step with a kept feature in place of everything below the branch.
"""
from __future__ import annotations

import torch
from torch import nn

from ..cut.attention import PatchPlan, plan_patch

# ---- VCUT on diffusers' UNet ----

def set_submodule(root: nn.Module, dotted_name: str, module: nn.Module) -> None:
    parent_name, _, child = dotted_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def patch_unet_(unet: nn.Module, mode: str = "exact") -> PatchPlan:
    """Apply VCUT to `unet` in place (for plain torch / diffusers use; ComfyUI nodes use object patches)."""
    plan = plan_patch(unet, mode)
    for name, module in plan.replacements.items():
        set_submodule(unet, name, module)
    return plan


# ---- the UNet Feature Cache's partial step on diffusers' UNet ----

def _layers(unet):
    """diffusers' SVD UNet as ComfyUI's flat layer lists: input layers (conv_in, then (resnet, attention) pairs and
    downsamplers) and output layers ((resnet, attention, upsampler of the level's last layer))."""
    inputs = [("conv", unet.conv_in)]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        inputs += [("res", (resnet, attn)) for resnet, attn in zip(block.resnets, attentions, strict=False)]
        if block.downsamplers is not None:
            inputs.append(("down", block.downsamplers))
    outputs = []
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        pairs = list(zip(block.resnets, attentions, strict=False))
        for i, (resnet, attn) in enumerate(pairs):
            outputs.append((resnet, attn, block.upsamplers if i == len(pairs) - 1 else None))
    return inputs, outputs


def branch_count(unet) -> int:
    return len(_layers(unet)[0])


def shallow_modules(unet, branch: int) -> list:
    """The layer modules a partial step at `branch` runs (for per-module costs such as VCUT's vectors)."""
    inputs, outputs = _layers(unet)
    flat = [layer for _, layer in inputs[:branch + 1]] + outputs[len(outputs) - 1 - branch:]
    return [m for layer in flat for m in (layer if isinstance(layer, tuple) else (layer,)) if m is not None]


def _embed(unet, sample, timestep, added_time_ids):
    """diffusers' forward up to conv_in's input: the time + added-time embedding per frame."""
    batch, frames = sample.shape[:2]
    t_emb = unet.time_proj(timestep.expand(batch)).to(sample.dtype)
    emb = unet.time_embedding(t_emb)
    emb = emb + unet.add_embedding(unet.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype))
    return emb.repeat_interleave(frames, dim=0), torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)


def step(unet, sample, timestep, encoder_hidden_states, added_time_ids, branch: int,
         cached: torch.Tensor | None = None):
    """One UNet call, layer by layer: (output, feature entering output layer L-1-branch). cached=None: the full
    step (the same computation as unet(...)); otherwise a partial step with `cached` in place of that feature."""
    inputs, outputs = _layers(unet)
    batch, frames = sample.shape[:2]
    emb, indicator = _embed(unet, sample, timestep, added_time_ids)
    context = encoder_hidden_states.repeat_interleave(frames, dim=0)
    h = sample.flatten(0, 1)
    run_inputs = inputs if cached is None else inputs[:branch + 1]
    skips = []
    for kind, layer in run_inputs:
        if kind == "conv":
            h = layer(h)
        elif kind == "down":
            for down in layer:
                h = down(h)
        else:
            resnet, attn = layer
            h = resnet(h, emb, image_only_indicator=indicator)
            if attn is not None:
                h = attn(h, encoder_hidden_states=context, image_only_indicator=indicator, return_dict=False)[0]
        skips.append(h)
    first = len(outputs) - 1 - branch
    if cached is None:
        h = unet.mid_block(hidden_states=h, temb=emb, encoder_hidden_states=context, image_only_indicator=indicator)
    else:
        h = cached
    up_factor = 2 ** sum(1 for block in unet.up_blocks if block.upsamplers is not None)
    resize = any(s % up_factor for s in sample.shape[-2:])
    feature = None
    for j, (resnet, attn, upsamplers) in enumerate(outputs):
        if j < first and cached is not None:
            continue
        if j == first:
            feature = h
        h = resnet(torch.cat([h, skips.pop()], dim=1), emb, image_only_indicator=indicator)
        if attn is not None:
            h = attn(h, encoder_hidden_states=context, image_only_indicator=indicator, return_dict=False)[0]
        if upsamplers is not None:
            for up in upsamplers:
                h = up(h, skips[-1].shape[2:] if resize and skips else None)
    h = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
    return h.reshape(batch, frames, *h.shape[1:]), feature
