"""Video cores, no ComfyUI import, frames in and frames or numbers out: comparisons of videos (compare.py: Video
Compare's per-frame PSNR, SSIM and temporal difference of a candidate video against a reference, its preview and
plot), SSIM itself (ssim.py, also Video Loop Metrics' motion), and the join of overlapping decoded segments with
their colour matching and joint report (segments.py: Join Video Segments)."""
