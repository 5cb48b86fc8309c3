"""Motion-vector codec core (decouple-content-motion / ED-VDM): a video as first frame + per-block motion vectors +
residuals, reversibly (bit for bit, for 8-bit and for any float32 frames: codec.types), and saved to / loaded from
.safetensors files. Plain torch/numpy/OpenCV, no ComfyUI."""
from .encode_decode import decode, encode, encode_pairs, motion_only_psnr, predict, psnr, residuals_for, search
from .storage import FORMAT_VERSION, MEMORY_BUDGET, MotionFileError, load_motion_vectors, save_motion_vectors
from .types import (
                    BLOCK_SIZES,
                    PRECISIONS,
                    MotionVectors,
                    codec_frames,
                    codec_to_image,
                    image_to_residual,
                    image_to_uint8,
                    residual_to_image,
                    uint8_to_image,
)
from .visualize import motion_preview
from .x264 import x264_motion_vectors

__all__ = ["BLOCK_SIZES", "FORMAT_VERSION", "MEMORY_BUDGET", "PRECISIONS", "MotionFileError", "MotionVectors",
           "codec_frames", "codec_to_image", "decode", "encode", "encode_pairs", "image_to_residual",
           "image_to_uint8", "load_motion_vectors", "motion_only_psnr", "motion_preview", "predict", "psnr",
           "residual_to_image", "residuals_for", "save_motion_vectors", "search", "uint8_to_image",
           "x264_motion_vectors"]
