"""SSIM (Wang, Bovik, Sheikh, Simoncelli 2004, "Image Quality Assessment: From Error Visibility to Structural
Similarity"), Gaussian 11x11 window, sigma 1.5, K1 = 0.01, K2 = 0.03: Video Compare's per-frame SSIM and Video Loop
Metrics' motion (1 - SSIM of consecutive frames). Images are ComfyUI IMAGE tensors, float in [0, 1]. No comfy import.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window [size, size] (SSIM's standard 11x11, sigma 1.5)."""
    g = _gaussian_1d(size, sigma)
    return torch.outer(g, g)


def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) per image pair of two [B,H,W,C] batches -> [B].

    Gaussian-weighted local statistics (valid region only, as the reference implementation), K1=0.01, K2=0.03,
    C1=(K1 L)^2, C2=(K2 L)^2, computed per channel and averaged over channels and pixels. Images smaller than the
    window use a window of their smaller side. One pair at a time in float32 (`ssim_pair`), so memory stays a fixed
    multiple of one frame whatever the number of frames.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two [B,H,W,C] batches of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    # one frame of each at a time, as float32 on the CPU: never the whole video converted
    return torch.tensor([ssim_pair(x[i].float().cpu(), y[i].float().cpu(), data_range, window_size, sigma)
                         for i in range(x.shape[0])], dtype=torch.float32)


def ssim_pair(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
              sigma: float = 1.5) -> float:
    """Mean SSIM of two float32 images [H,W,C]; the working memory is about 20 float32 copies of one image
    (about 140 MB for a 1024x576 RGB frame).

    The Gaussian window is separable: a vertical then a horizontal 1-D pass give the 2-D weighted means. Both images
    are shifted by the first one's mean before the second moments are taken (variances and covariance do not change
    under a shift), which keeps float32's cancellation in E[a^2] - E[a]^2 far below SSIM's C2.
    """
    size = min(window_size, a.shape[0], a.shape[1])
    c = a.shape[-1]
    shift = float(a.mean())
    a = a.permute(2, 0, 1) - shift  # [C,H,W], a new tensor
    b = b.permute(2, 0, 1) - shift
    g = _gaussian_1d(size, sigma).float()
    n = 5 * c
    stats = torch.cat([a, b, a * a, b * b, a * b])[None]  # [1, 5C, H, W]
    del a, b
    stats = F.conv2d(stats, g.view(1, 1, size, 1).expand(n, 1, size, 1), groups=n)
    stats = F.conv2d(stats, g.view(1, 1, 1, size).expand(n, 1, 1, size), groups=n)[0]
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(c)
    s_aa = e_aa - mu_a * mu_a
    s_bb = e_bb - mu_b * mu_b
    s_ab = e_ab - mu_a * mu_b
    mu_a = mu_a + shift
    mu_b = mu_b + shift
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (s_aa + s_bb + c2)
    return float((num / den).mean(dtype=torch.float64))
