"""Per-run cost report of the VCUT speed nodes: one log line at the end of a sampling run, and the same text on the
executing (sampler) node where the running ComfyUI shows progress text (PromptServer.send_progress_text, in 0.8.0
and later). MACs are counted with the accounting of the benchmarks (cut/accounting.count_macs, FlopCounterMode)
on one call of each kind per run and scaled by rows (a UNet call's MACs are proportional to its rows)."""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..cut.accounting import count_macs
from .checks import log


class RunCost:
    """MACs per row of each kind of UNet call (measured on the first call of the kind), rows and seconds."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.per_row: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def call(self, kind: str, rows: int, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run one UNet call of `kind` (its MACs counted the first time) and add its rows. Only the counting and the
        bookkeeping are kept out of torch.compile's graphs; the call itself runs where it is, compiled or not."""
        if self._add(kind, rows):
            return run()
        return self._count(kind, rows, run)

    @torch.compiler.disable
    def _add(self, kind: str, rows: int) -> bool:
        """Add the rows; False for the first call of `kind`, which _count measures."""
        self.rows[kind] = self.rows.get(kind, 0) + rows
        return kind in self.per_row

    @torch.compiler.disable
    def _count(self, kind: str, rows: int, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        result = []
        self.per_row[kind] = count_macs(lambda: result.append(run())).all_matmuls // max(rows, 1)
        return result[0]

    def macs(self, reference: str) -> tuple[int, int]:
        """(this run's MACs, the MACs had every row run as `reference`)."""
        spent = sum(self.per_row.get(k, 0) * r for k, r in self.rows.items())
        return spent, self.per_row.get(reference, 0) * sum(self.rows.values())


def report(name: str, text: str, cost: RunCost | None = None, reference: str = "full") -> str:
    """Log `name: text` with the run's MACs and seconds, and show it on the executing node if ComfyUI can."""
    if cost is not None:
        spent, baseline = cost.macs(reference)
        ratio = f" = {spent / baseline:.2f}x" if baseline else ""
        text += (f"; {spent / 1e9:.3g} GMACs vs {baseline / 1e9:.3g} without {name}{ratio}; "
                 f"{time.perf_counter() - cost.started:.1f} s")
    line = f"{name}: {text}"
    log.info(line)
    try:
        from comfy_execution.utils import get_executing_context
        from server import PromptServer
    except ImportError:
        return line
    context, server = get_executing_context(), getattr(PromptServer, "instance", None)
    if context is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(line, context.node_id)
    return line
