"""SVD's video VAE as ComfyUI builds it, with seeded random weights (no weights exist on these machines).

Needs ComfyUI on sys.path (its own Python environment). comfy.sd.VAE picks SVD's config when the state dict holds
decoder.mid.block_1.mix_factor: SVD's full-width architecture (ch 128, ch_mult 1-2-4-4, 2 ResBlocks per level) with
comfy.ldm.modules.temporal_ae.VideoDecoder (kernel [3, 1, 1] temporal convs in every ResBlock and the output conv,
merge factors alpha = 0). comfy.ops leaves weights uninitialised: they get PyTorch's default initialisation per
layer (Kaiming-uniform convs and linears, GroupNorm 1/0), seeded; the merge factors keep their config value 0.
"""
from __future__ import annotations

import logging

import torch


def svd_video_vae(seed: int = 0):
    import comfy.sd
    logging.disable(logging.WARNING)  # ComfyUI lists every key the one-key state dict lacks
    try:
        vae = comfy.sd.VAE(sd={"decoder.mid.block_1.mix_factor": torch.zeros(1)})
    finally:
        logging.disable(logging.NOTSET)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module in vae.first_stage_model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
                torch.nn.modules.conv._ConvNd.reset_parameters(module)
            elif isinstance(module, torch.nn.Linear):
                torch.nn.Linear.reset_parameters(module)
            elif isinstance(module, torch.nn.GroupNorm):
                torch.nn.GroupNorm.reset_parameters(module)
    return vae
