"""VCUT's cross-attention replacement for SVD's SpatialVideoTransformer blocks (no ComfyUI import).

SVD conditions its UNet on ONE token per sample, the pooled CLIP image embedding. With one key the attention
softmax is exactly 1 (VCUT paper, Sec. III-A/III-B, Eq. 2 with a single key), so for every query token

    attn2(x, c) = to_out(softmax(q k^T / sqrt(d)) v) = to_out(to_v(c))

The output does not depend on the query tokens at all: it is one vector per distinct context, computed once,
cached and broadcast (the paper's "linear layer computed once at the first step", Eq. 4). to_q, to_k and the
attention product are never run, and to_out runs on one row per context instead of one row per token.

The same code serves ComfyUI's UNet (SpatialVideoTransformer: `transformer_blocks` + `time_stack`, CrossAttention
called as attn2(x, context=, value=, transformer_options=)) and diffusers' UNetSpatioTemporalConditionModel
(TransformerSpatioTemporalModel: `transformer_blocks` + `temporal_transformer_blocks`, Attention called as
attn2(x, encoder_hidden_states=)).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import torch
from torch import nn

SPATIAL = "spatial"
TEMPORAL = "temporal"
MODES = ("exact", "paper")

# Distinct contexts kept per module: a sampling run has two (image embedding and the zero embedding of the
# unconditional branch); a few more cover batched prompts. Bounded so memory stays flat over many runs.
MAX_CACHED_CONTEXTS = 8


@dataclasses.dataclass
class CrossAttentionSite:
    """One attn2 of a SpatialVideoTransformer: its dotted module path, the module and its kind."""
    name: str
    module: nn.Module
    kind: str  # SPATIAL or TEMPORAL


def find_cross_attentions(unet: nn.Module) -> list[CrossAttentionSite]:
    """All attn2 modules of the video transformer blocks of an SVD UNet (ComfyUI's or diffusers'), in order."""
    sites = []
    for name, module in unet.named_modules():
        spatial_blocks = getattr(module, "transformer_blocks", None)
        temporal_blocks = getattr(module, "time_stack", None)  # ComfyUI
        if temporal_blocks is None:
            temporal_blocks = getattr(module, "temporal_transformer_blocks", None)  # diffusers
        if spatial_blocks is None or temporal_blocks is None:
            continue
        temporal_name = "time_stack" if hasattr(module, "time_stack") else "temporal_transformer_blocks"
        prefix = f"{name}." if name else ""
        for kind, blocks_name, blocks in ((SPATIAL, "transformer_blocks", spatial_blocks),
                                          (TEMPORAL, temporal_name, temporal_blocks)):
            for index, block in enumerate(blocks):
                attn2 = getattr(block, "attn2", None)
                if attn2 is not None:
                    sites.append(CrossAttentionSite(f"{prefix}{blocks_name}.{index}.attn2", attn2, kind))
    return sites


def unsupported_reason(module: nn.Module) -> str | None:
    """Why `module` cannot be replaced by the cached form, or None when it can (a plain q/k/v/out attention)."""
    if isinstance(module, (CachedCrossAttention, RemovedCrossAttention)):
        return None
    missing = [n for n in ("to_q", "to_k", "to_v", "to_out") if not hasattr(module, n)]
    if missing:
        return f"{type(module).__name__} has no {', '.join(missing)} (replaced by another node pack?)"
    # diffusers' Attention options that would change the output of the one-token path.
    if getattr(module, "residual_connection", False) or getattr(module, "rescale_output_factor", 1.0) != 1.0:
        return f"{type(module).__name__} uses a residual connection or output rescaling"
    for option in ("norm_cross", "group_norm", "spatial_norm"):
        if getattr(module, option, None) is not None:
            return f"{type(module).__name__} uses {option}"
    if type(module).__name__ not in ("CrossAttention", "Attention"):
        return f"{type(module).__name__} is not SVD's CrossAttention (replaced by another node pack?)"
    return None


def _run_sequence(layers, x: torch.Tensor) -> torch.Tensor:
    """to_out is nn.Sequential in ComfyUI and nn.ModuleList in diffusers: apply its layers in order."""
    for layer in layers:
        x = layer(x)
    return x


def _output_features(to_out) -> int:
    return next(layer for layer in to_out if hasattr(layer, "out_features")).out_features


def _weight_signature(*modules: nn.Module) -> tuple:
    """Identity and version of the weights a cached vector was computed with; any change (LoRA patching,
    dtype/device moves, ComfyUI's per-forward weight functions) makes it differ, which empties the cache."""
    signature = []
    for module in modules:
        for tensor in (getattr(module, "weight", None), getattr(module, "bias", None)):
            if tensor is not None:
                version = 0 if tensor.is_inference() else tensor._version  # inference tensors have none
                signature += [tensor.data_ptr(), version, tensor.dtype, tensor.device]
        signature += [id(f) for f in getattr(module, "weight_function", ())]
    return tuple(signature)


def _distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distinct rows, index of each input row into them). Contexts repeat in long runs (every frame and, for the
    temporal blocks, every spatial position of a sample carries the same embedding), so runs are collapsed first
    with one linear pass; the few run heads are then deduplicated exactly."""
    starts = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
    if rows.shape[0] > 1:
        starts[1:] = (rows[1:] != rows[:-1]).any(dim=-1)
    run_of_row = torch.cumsum(starts, 0) - 1
    heads = rows[starts]
    distinct, head_to_distinct = torch.unique(heads, dim=0, return_inverse=True)
    return distinct, head_to_distinct[run_of_row]


class CachedCrossAttention(nn.Module):
    """attn2 replaced by to_out(to_v(context)), computed once per distinct one-token context and broadcast.

    Keeps only to_v and to_out as submodules. A context of more than one token (another node concatenated
    embeddings), an attention mask, or an unknown calling convention runs the original attention instead, so the
    result is never wrong; the original module is kept for that, outside the module tree (its to_q/to_k are not
    parameters of the patched model).
    """

    def __init__(self, original: nn.Module):
        super().__init__()
        self.to_v = original.to_v
        self.to_out = original.to_out
        self._original = (original,)  # a tuple: not registered as a submodule
        self.vectors_computed = 0  # rows run through to_v/to_out, for tests and logs
        self.clear_cache()

    @property
    def original(self) -> nn.Module:
        return self._original[0]

    def clear_cache(self) -> None:
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self._signature: tuple | None = None

    def cached_contexts(self) -> int:
        return 0 if self._keys is None else self._keys.shape[0]

    def forward(self, x, context=None, value=None, mask=None, transformer_options=None,
                encoder_hidden_states=None, attention_mask=None, **kwargs):
        context = encoder_hidden_states if context is None else context
        mask = attention_mask if mask is None else mask
        source = context if value is None else value
        one_token = (context is not None and context.ndim == 3 and context.shape[1] == 1
                     and source.ndim == 3 and source.shape[1] == 1 and source.shape[0] == context.shape[0]
                     and context.shape[0] in (1, x.shape[0]))
        if not one_token or mask is not None or kwargs:
            return self._real_attention(x, context, value, mask, transformer_options,
                                        encoder_hidden_states, attention_mask, kwargs)
        per_sample = self._vectors(source[:, 0, :])  # (N, C): VCUT Eq. 4, the cached linear output
        out = per_sample.unsqueeze(1).expand(x.shape[0], x.shape[1], per_sample.shape[-1])
        patches = (transformer_options or {}).get("patches", {})
        if patches.get("attn2_output_patch"):
            out = out.contiguous()  # other nodes' output patches may write into it
        return out

    def _real_attention(self, x, context, value, mask, transformer_options, encoder_hidden_states,
                        attention_mask, kwargs):
        if encoder_hidden_states is not None or attention_mask is not None or transformer_options is None:
            return self.original(x, encoder_hidden_states=context, attention_mask=mask, **kwargs)
        return self.original(x, context=context, value=value, mask=mask, transformer_options=transformer_options)

    def _vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """to_out(to_v(row)) for every row, from the cache where the same row was seen before."""
        if rows.is_meta:
            # A shape-only run (MAC accounting on the meta device) has no values to compare: it stands for the
            # cached steady state, in which nothing is computed. cut.accounting adds the one-time fill.
            return rows.new_empty(rows.shape[0], _output_features(self.to_out))
        signature = _weight_signature(self.to_v, *self.to_out) + (rows.dtype, rows.device)
        if signature != self._signature:
            self.clear_cache()
            self._signature = signature
        distinct, row_index = _distinct_rows(rows)
        keys, values = self._keys, self._values
        if keys is not None and keys.shape == distinct.shape and torch.equal(keys, distinct):
            return values[row_index]  # the common case: the same contexts as the previous call
        position = torch.full((distinct.shape[0],), -1, dtype=torch.long, device=rows.device)
        if keys is not None:
            matches = (distinct[:, None, :] == keys[None, :, :]).all(dim=-1)  # (distinct, cached)
            position = torch.where(matches.any(dim=1), matches.float().argmax(dim=1), position)
        missing = position < 0
        if missing.any():
            fresh = _run_sequence(self.to_out, self.to_v(distinct[missing]))
            self.vectors_computed += fresh.shape[0]
            start = 0 if keys is None else keys.shape[0]
            position[missing] = torch.arange(start, start + fresh.shape[0], device=rows.device)
            keys = distinct[missing] if keys is None else torch.cat([keys, distinct[missing]])
            values = fresh if values is None else torch.cat([values, fresh])
        result = values[position][row_index]
        self._keys, self._values = keys[-MAX_CACHED_CONTEXTS:], values[-MAX_CACHED_CONTEXTS:]
        return result


class RemovedCrossAttention(nn.Module):
    """VCUT paper mode for temporal cross-attention: removed (Insight 1), so the block's residual passes through.
    The original module is kept outside the module tree only so that a later patch in exact mode can restore it."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self._original = (original,)

    @property
    def original(self) -> nn.Module:
        return self._original[0]

    def forward(self, x, *args, **kwargs):
        return torch.zeros((), dtype=x.dtype, device=x.device).expand_as(x)


@dataclasses.dataclass
class PatchPlan:
    """Which attn2 modules to swap for what, which to leave alone and why, and the parameters no longer read."""
    replacements: dict[str, nn.Module]
    skipped: list[tuple[str, str]]
    already_patched: int
    parameters_removed: int

    def summary(self) -> str:
        text = (f"{len(self.replacements)} cross-attentions replaced, {self.already_patched} already VCUT, "
                f"{self.parameters_removed / 1e6:.2f}M parameters no longer used")
        if self.skipped:
            text += "; left alone: " + "; ".join(f"{name} ({why})" for name, why in self.skipped)
        return text


def _parameter_count(modules: Iterator[nn.Module]) -> int:
    seen = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def plan_patch(unet: nn.Module, mode: str = "exact", resolve=None) -> PatchPlan:
    """Decide the VCUT replacement of every attn2 of an SVD UNet without changing the UNet.

    exact: all 32 cross-attentions (16 spatial, 16 temporal) become CachedCrossAttention: same output.
    paper: spatial ones become CachedCrossAttention, temporal ones are removed (the paper's VCUT model).
    `resolve(name, module)` gives the module currently in effect at a site (ComfyUI: its object patches).
    A site that already holds the wanted VCUT module is counted as already patched (patching is idempotent).
    Raises ValueError when the module has no SpatialVideoTransformer cross-attention (not an SVD UNet).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    sites = find_cross_attentions(unet)
    if not sites:
        raise ValueError(f"{type(unet).__name__} has no SpatialVideoTransformer cross-attention: not an SVD UNet")
    replacements, skipped, already, removed = {}, [], 0, 0
    for site in sites:
        module = resolve(site.name, site.module) if resolve else site.module
        wanted = RemovedCrossAttention if (mode == "paper" and site.kind == TEMPORAL) else CachedCrossAttention
        if isinstance(module, (CachedCrossAttention, RemovedCrossAttention)):
            if isinstance(module, wanted):
                already += 1
                removed += _removed_parameters(module.original, wanted)
                continue
            module = module.original  # switching mode: rebuild from the original attention
        why = unsupported_reason(module)
        if why:
            skipped.append((site.name, why))
            continue
        replacements[site.name] = wanted(module)
        removed += _removed_parameters(module, wanted)
    return PatchPlan(replacements, skipped, already, removed)


def _removed_parameters(original: nn.Module, replacement_type: type) -> int:
    """Parameters of `original` that its replacement never reads: all of them when removed, else to_q and to_k."""
    if replacement_type is RemovedCrossAttention:
        return _parameter_count([original])
    return _parameter_count([original.to_q, original.to_k])


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


def clear_caches(unet: nn.Module) -> None:
    """Drop every cached context vector of a patched UNet (called at the start and end of a sampling run)."""
    for module in unet.modules():
        if isinstance(module, CachedCrossAttention):
            module.clear_cache()
