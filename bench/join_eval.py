"""Join Video Segments on real frames: exact rejoin, how much of a colour cast the colour matching removes, and the
seam report. Prints a Markdown table (BENCHMARKS.md).

    .venv/bin/python bench/join_eval.py
"""
from __future__ import annotations

import pathlib
import sys

import cv2
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from clips import read_frames  # noqa: E402  (after the sys.path / package setup above)
from pack_import import SHARED_DATA, register_pack  # noqa: E402  (after the sys.path / package setup above)

register_pack()
from vcut.video.segments import join_segments, seam_report  # noqa: E402  (after the sys.path / package setup above)

LENGTHS, OVERLAP = (15, 15, 14), 2


def split(video: torch.Tensor) -> list[torch.Tensor]:
    out, start = [], 0
    for n in LENGTHS:
        out.append(video[start:start + n].clone())
        start += n - OVERLAP
    return out


def lab_cast(frames: torch.Tensor) -> torch.Tensor:
    """A tint and a darker image in CIELAB: a* +6, b* -8, L* x 0.92."""
    lab = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2LAB) for f in frames.numpy()])
    lab[..., 0] *= 0.92
    lab[..., 1] += 6.0
    lab[..., 2] -= 8.0
    return torch.from_numpy(np.clip(np.stack([cv2.cvtColor(f, cv2.COLOR_LAB2RGB) for f in lab]), 0, 1))


def rgb_cast(frames: torch.Tensor) -> torch.Tensor:
    """A per-channel RGB gain and offset: R x 1.2, B x 0.8, G + 0.04, clipped."""
    return (frames * torch.tensor([1.2, 1.0, 0.8]) + torch.tensor([0.0, 0.04, 0.0])).clamp(0, 1)


def main() -> int:
    print("| clip | cast | left after 'overlap' | left after 'anchor frame' | error before |")
    print("|---|---|---|---|---|")
    for name, start in (("vid_h264.mp4", 0), ("vid_h264.mp4", 150)):
        frames = torch.from_numpy(read_frames(SHARED_DATA / "video" / name, sum(LENGTHS) - 2 * OVERLAP, start))
        video = torch.nn.functional.interpolate(frames.float().movedim(-1, 1) / 255.0, size=(72, 128),
                                                mode="area").movedim(1, -1)
        parts = split(video)
        assert torch.equal(join_segments(parts, OVERLAP), video), "the join must give back the original frames"
        for cast_name, cast in (("CIELAB tint", lab_cast), ("RGB gain", rgb_cast)):
            bad = split(video)
            bad[1] = cast(bad[1])
            region = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1] - OVERLAP)

            def error(mode, bad=bad, region=region):
                return float((join_segments(bad, OVERLAP, mode)[region] - video[region]).abs().mean())
            before = error("off")
            print(f"| {name} from {start} | {cast_name} | {error('overlap') / before:.0%} | "
                  f"{error('anchor frame') / before:.0%} | {before:.4f} |")
        print(f"\n{seam_report(join_segments(parts, OVERLAP), list(LENGTHS), OVERLAP)[1]}\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
