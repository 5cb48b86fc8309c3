"""Reading frames of the real test clips (tests/data/video, ../shared/data/video), for the benchmarks and the tests."""
from __future__ import annotations

import pathlib

import av
import numpy as np


def read_frames(path: str | pathlib.Path, count: int, start: int = 0) -> np.ndarray:
    """`count` decoded RGB frames of a video file from frame `start`, as uint8 [count, H, W, 3]."""
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise ValueError(f"{path}: only {len(frames)} frames from frame {start}, asked for {count}")
    return np.stack(frames)


def resized_clip(path: str | pathlib.Path, count: int, width: int, height: int):
    """`count` frames of a video file resized (area) to width x height, float32 [count, H, W, 3] in 0..1 as VAE Decode
    gives them; built one frame at a time, so the float video is the only large allocation (memory benchmarks)."""
    import torch
    import torch.nn.functional as F
    raw = read_frames(path, count, 0)
    frames = torch.empty(count, height, width, 3)
    for i, f in enumerate(raw):
        t = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0
        frames[i] = F.interpolate(t, size=(height, width), mode="area")[0].permute(1, 2, 0)
    return frames


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM); KeyError where this system has no such field."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> int:
    """Reset this process's peak resident set (VmHWM) to its current one (/proc/self/clear_refs); returns VmRSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS")
