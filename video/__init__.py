"""Video cores, no ComfyUI import: comparisons of videos, frames in and numbers out (compare.py: Video Compare's
per-frame PSNR, SSIM and temporal difference of a candidate video against a reference, its preview and plot)."""
