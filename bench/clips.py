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
