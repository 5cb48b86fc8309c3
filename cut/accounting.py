"""MAC and parameter accounting for SVD UNets, baseline vs VCUT (no ComfyUI import).

MACs are counted with torch.utils.flop_counter.FlopCounterMode (FLOPs / 2), normally on the meta device so the
full-size models need no weights. Two conventions are reported:
- "all matmuls": everything FlopCounterMode counts (linear, conv and the attention products).
- "linear+conv": the paper's convention (thop counts nn.Linear / nn.Conv layers, not attention matmuls).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attention import BroadcastCrossAttention, linear_of, unread_parameter_count

_ATTENTION_OPS = ("bmm", "baddbmm", "_scaled_dot_product")


@dataclasses.dataclass
class MacCount:
    all_matmuls: int
    linear_conv: int

    def __add__(self, other: "MacCount") -> "MacCount":
        return MacCount(self.all_matmuls + other.all_matmuls, self.linear_conv + other.linear_conv)

    def scaled(self, factor: int) -> "MacCount":
        return MacCount(self.all_matmuls * factor, self.linear_conv * factor)


def count_macs(run: Callable[[], object]) -> MacCount:
    """MACs of everything `run()` computes, split into the two conventions."""
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            run()
    per_op = counter.get_flop_counts().get("Global", {})
    total = sum(per_op.values())
    attention = sum(v for op, v in per_op.items() if any(name in str(op) for name in _ATTENTION_OPS))
    return MacCount(total // 2, (total - attention) // 2)


def vector_macs(unet: nn.Module, contexts: int) -> int:
    """MACs of computing `contexts` VCUT vectors, to_out(to_v(c)), in every broadcast cross-attention (both
    conventions). A meta-device count holds one context per call; a CFG step has two distinct contexts."""
    total = 0
    for module in unet.modules():
        if isinstance(module, BroadcastCrossAttention):
            to_out = linear_of(module.to_out)
            total += contexts * (module.to_v.in_features * module.to_v.out_features
                                 + to_out.in_features * to_out.out_features)
    return total


def parameter_count(module: nn.Module) -> int:
    """Parameters the module's forward reads: its unique tensors less those VCUT's replacements never read (they
    stay in the module tree, so the model's keys are unchanged)."""
    total = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    return total - unread_parameter_count(module)


def video_macs(guided_step: MacCount, unguided_step: MacCount, steps: int, cut_step: int) -> MacCount:
    """MACs of a whole video: steps 1..c-1 with CFG (2 rows per frame), c..N conditional only (VCUT Eq. 4)."""
    guided = min(max(cut_step - 1, 0), steps)
    return guided_step.scaled(guided) + unguided_step.scaled(steps - guided)
