"""Seamless chunked decoding of video latents whose decoder mixes neighbouring frames (SVD's video VAE): chunk plans
with context frames, blend weights, spatial tiles and the stitching loop. Plain torch, no ComfyUI."""
from .chunks import Span, check_chunking, choose_chunking, decode_chunked, plan_spans, span_weights

__all__ = ["Span", "check_chunking", "choose_chunking", "decode_chunked", "plan_spans", "span_weights"]
