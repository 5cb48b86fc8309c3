"""VCUT's cross-attention replacement for SVD's SpatialVideoTransformer blocks (no ComfyUI import).

SVD conditions its UNet on ONE token per sample, the pooled CLIP image embedding. With one key the attention
softmax is exactly 1 (VCUT paper, Sec. III-A/III-B, Eq. 2 with a single key), so for every query token

    attn2(x, c) = to_out(softmax(q k^T / sqrt(d)) v) = to_out(to_v(c))

The output does not depend on the query tokens at all: it is one vector per distinct context, computed once per
call and broadcast (the paper's linear layer of Eq. 4). to_q, to_k and the attention product are never run, and
to_v / to_out run on one row per distinct context instead of one row per token. The replacements keep every
submodule of the original attention under its own name, so the model's parameter keys never change.

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
                if hasattr(block, "attn2"):  # None where another node removed it: reported by plan_patch
                    sites.append(CrossAttentionSite(f"{prefix}{blocks_name}.{index}.attn2", block.attn2, kind))
    return sites


def unsupported_reason(module: nn.Module) -> str | None:
    """Why `module` cannot be replaced by the one-token broadcast, or None when it can (a plain q/k/v/out attention)."""
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


def _writable(out: torch.Tensor, transformer_options) -> torch.Tensor:
    """A broadcast (expanded) output, made contiguous when other nodes' attn2 output patches may write into it."""
    if (transformer_options or {}).get("patches", {}).get("attn2_output_patch"):
        return out.contiguous()
    return out


def linear_of(layers) -> nn.Module:
    """The Linear layer of to_out (nn.Sequential in ComfyUI, nn.ModuleList in diffusers; the other layer is dropout)."""
    return next(layer for layer in layers if hasattr(layer, "out_features"))


def attention_macs(module: nn.Module, batch: int, tokens: int, context_tokens: int) -> int:
    """MACs of an unpatched q/k/v/out attention: `batch` samples of `tokens` queries, each attending to
    `context_tokens` keys (to_q, to_k, to_v, q k^T, softmax(.) v and to_out; counted as FlopCounterMode counts them)."""
    inner, out = module.to_q.out_features, linear_of(module.to_out).out_features
    queries, keys = batch * tokens, batch * context_tokens
    return (queries * module.to_q.in_features * inner + 2 * keys * module.to_k.in_features * inner
            + 2 * queries * context_tokens * inner + queries * inner * out)


class _StandIn(nn.Module):
    """Base of the VCUT replacements: holds the original attn2's submodules, parameters and buffers under their own
    names, so the model's parameter keys (state_dict, LoRA key maps, merges, ModelSave) are exactly those of the
    unpatched model, and answers any other attribute (heads, dim_head, ...) from the original module. Other nodes
    that call attn2.to_q / to_k / to_v / to_out themselves (attn2 replace patches) therefore still work."""

    def __init__(self, original: nn.Module):
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        for name, parameter in original.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, buffer in original.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        self._original = (original,)  # a tuple: not registered a second time
        self.saved_macs = 0  # the original attention's MACs less this module's, on its last call (the run report's
        #                      unpatched reference: nodes/run.py)

    @property
    def original(self) -> nn.Module:
        return self._original[0]

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("_original")
            if original is None:
                raise
            return getattr(original[0], name)

    def unread_parameters(self) -> int:
        """Parameters of the original module this replacement never reads (reported, not hidden)."""
        raise NotImplementedError


class BroadcastCrossAttention(_StandIn):
    """attn2 replaced by to_out(to_v(context)), computed once per distinct one-token context of a call and broadcast
    to every query (VCUT Eq. 4). to_q and to_k stay in the module (same keys) but never run.

    The vectors are recomputed on every call rather than kept across calls: they cost one to_v and one to_out row
    per distinct context (two in a CFG step; 0.1 G MACs, 1.6e-6 of an SVD-XT step), while a vector kept across
    calls could be stale whenever ComfyUI changes weights in place (hook keyframes, LoRA weight functions, lowvram
    casting). So the result always uses the weights in effect at the call. A context of more than one token (another
    node concatenated embeddings), an attention mask, or an unknown calling convention runs the original attention.
    """

    def __init__(self, original: nn.Module):
        super().__init__(original)
        self.vectors_computed = 0  # rows run through to_v/to_out, for tests and logs

    def unread_parameters(self) -> int:
        return _parameter_count([self.to_q, self.to_k])

    def forward(self, x, context=None, value=None, mask=None, transformer_options=None,
                encoder_hidden_states=None, attention_mask=None, **kwargs):
        context = encoder_hidden_states if context is None else context
        mask = attention_mask if mask is None else mask
        source = context if value is None else value
        one_token = (context is not None and context.ndim == 3 and context.shape[1] == 1
                     and source.ndim == 3 and source.shape[1] == 1 and source.shape[0] == context.shape[0]
                     and context.shape[0] in (1, x.shape[0]))
        if not one_token or mask is not None or kwargs:
            self.saved_macs = 0
            return self._real_attention(x, context, value, mask, transformer_options,
                                        encoder_hidden_states, attention_mask, kwargs)
        per_sample, distinct = self._vectors(source[:, 0, :])  # (N, C): VCUT Eq. 4, the linear output of the token
        self.saved_macs = (attention_macs(self, x.shape[0], x.shape[1], 1)
                           - distinct * (self.to_v.in_features * self.to_v.out_features
                                         + linear_of(self.to_out).in_features * per_sample.shape[-1]))
        out = per_sample.unsqueeze(1).expand(x.shape[0], x.shape[1], per_sample.shape[-1])
        return _writable(out, transformer_options)

    def _real_attention(self, x, context, value, mask, transformer_options, encoder_hidden_states,
                        attention_mask, kwargs):
        if encoder_hidden_states is not None or attention_mask is not None or transformer_options is None:
            return self.original(x, encoder_hidden_states=context, attention_mask=mask, **kwargs)
        return self.original(x, context=context, value=value, mask=mask, transformer_options=transformer_options)

    def _vectors(self, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
        """to_out(to_v(row)) for every row, computed once per distinct row (softmax over one key is exactly 1), and
        how many rows were computed."""
        if rows.is_meta:
            # A shape-only run (MAC accounting on the meta device) has no values to deduplicate: it counts one
            # context; cut.accounting.vector_macs adds the second one of a CFG step.
            vectors = _run_sequence(self.to_out, self.to_v(rows[:1]))
            return vectors.expand(rows.shape[0], vectors.shape[-1]), 1
        distinct, row_index = _distinct_rows(rows)
        vectors = _run_sequence(self.to_out, self.to_v(distinct))
        self.vectors_computed += distinct.shape[0]
        return vectors[row_index], distinct.shape[0]


class RemovedCrossAttention(_StandIn):
    """VCUT paper mode for temporal cross-attention: removed (Insight 1), so the block's residual passes through.
    Its weights stay in the module (same keys) but are never read; the original module is kept so that a later
    patch in exact mode can restore it."""

    def unread_parameters(self) -> int:
        return _parameter_count([self.original])

    def forward(self, x, *args, transformer_options=None, **kwargs):
        context = kwargs.get("context", kwargs.get("encoder_hidden_states", args[0] if args else None))
        context_tokens = context.shape[1] if isinstance(context, torch.Tensor) and context.ndim == 3 else 1
        self.saved_macs = attention_macs(self, x.shape[0], x.shape[1], context_tokens)
        return _writable(torch.zeros((), dtype=x.dtype, device=x.device).expand_as(x), transformer_options)


VCUT_MODULES = (BroadcastCrossAttention, RemovedCrossAttention)


def original_of(module: nn.Module | None) -> nn.Module | None:
    """The attention a VCUT replacement stands in for (the module itself when it is not a VCUT replacement)."""
    while isinstance(module, VCUT_MODULES):
        module = module.original
    return module


@dataclasses.dataclass
class PatchPlan:
    """Which attn2 modules to swap for what, which to leave alone and why, and the parameters no longer read."""
    replacements: dict[str, nn.Module]
    skipped: list[tuple[str, str]]
    already_patched: int
    parameters_unread: int

    def summary(self) -> str:
        text = (f"{len(self.replacements)} cross-attentions replaced, {self.already_patched} already VCUT in this "
                f"model, {self.parameters_unread / 1e6:.2f}M parameters no longer read (kept in the model)")
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

    exact: all 32 cross-attentions (16 spatial, 16 temporal) become BroadcastCrossAttention: same output.
    paper: spatial ones become BroadcastCrossAttention, temporal ones are removed (the paper's VCUT model).
    `resolve(name, live_module)` gives the module in effect at a site for the model being patched (ComfyUI: its own
    object patches, else the unpatched module), so the plan never depends on what another model left in the live
    module tree. A site that already holds the wanted VCUT module is counted as already patched (idempotent); a
    VCUT module of the other mode is rebuilt from its original attention.
    Raises ValueError when the module has no SpatialVideoTransformer cross-attention (not an SVD UNet).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    sites = find_cross_attentions(unet)
    if not sites:
        raise ValueError(f"{type(unet).__name__} has no SpatialVideoTransformer cross-attention: not an SVD UNet")
    replacements, skipped, already, unread = {}, [], 0, 0
    for site in sites:
        in_effect = resolve(site.name, site.module) if resolve else site.module
        wanted = RemovedCrossAttention if (mode == "paper" and site.kind == TEMPORAL) else BroadcastCrossAttention
        if type(in_effect) is wanted:
            already += 1
            unread += in_effect.unread_parameters()
            continue
        module = original_of(in_effect)
        if module is None:
            skipped.append((site.name, "no attn2 here (removed by another node?)"))
            continue
        why = unsupported_reason(module)
        if why:
            skipped.append((site.name, why))
            continue
        replacements[site.name] = wanted(module)
        unread += replacements[site.name].unread_parameters()
    return PatchPlan(replacements, skipped, already, unread)


def unread_parameter_count(unet: nn.Module) -> int:
    """Parameters of a patched UNet that VCUT's replacements never read (they stay in the model's state_dict)."""
    return sum(m.unread_parameters() for m in unet.modules() if isinstance(m, VCUT_MODULES))
