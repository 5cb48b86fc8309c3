"""Inputs that several nodes share, each described once (as KJNodes and VideoHelperSuite do): the same name means the
same thing, with the same tooltip and range, on every node that has it."""
from __future__ import annotations

from comfy_api.latest import io

ANCHORED_MODEL = "The SVD model to patch for the anchoring (a copy is patched; the input model is unchanged)."
SVD_NEGATIVE = "SVD negative conditioning from SVD_img2vid_Conditioning."
OVERLAP = ("k: frames each segment shares with the one before it (Video Extend's overlap). Join Video Segments keeps "
           "every overlap once; connect Video Extend's overlap output to the next Video Extend's and to Join Video "
           "Segments' overlap so all of them agree (a different value would duplicate or skip frames at the joints).")


def anchor_steps() -> io.Float.Input:
    """The fraction of the sampling steps that are anchored (STIV Frame Replace, Loop Conditioning, Video Extend)."""
    return io.Float.Input(
        "anchor_steps", default=1.0, min=0.0, max=1.0, step=0.01,
        tooltip="Fraction of the sampling steps that are anchored, counted from the first. 1.0: every step, and the "
                "anchored frames (or regions) of the result equal their anchor exactly; less lets them drift in the "
                "last steps; 0 only writes the anchors into the output latent.")


def jit_cfg() -> io.Boolean.Input:
    """STIV's JIT-CFG switch (STIV Frame Replace, Video Extend)."""
    return io.Boolean.Input(
        "jit_cfg", default=True,
        tooltip="STIV's joint image-text CFG: only the conditional branch sees the anchors; the unconditional "
                "branch sees neither the anchors (it gets the sampler's own latent on anchored frames) nor the image "
                "(concat latent and CLIP embedding zeroed). Off: both branches are anchored.")


def overlap(minimum: int, extra: str = "") -> io.Int.Input:
    """k, the overlap of consecutive segments (Video Extend, Join Video Segments)."""
    return io.Int.Input("overlap", default=2, min=minimum, max=24, tooltip=OVERLAP + extra)
