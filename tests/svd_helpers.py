"""A small diffusers SVD UNet with random weights, and inputs shaped as SVD's CFG batches them (core tests)."""
import torch
from diffusers import UNetSpatioTemporalConditionModel

FRAMES = 3


def small_svd_unet(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64), num_attention_heads=(2, 4), cross_attention_dim=32,
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=24)
    with torch.no_grad():  # diffusers zero-initialises some output layers; random everywhere tests more
        for p in unet.parameters():
            p.normal_(0, 0.2)
    return unet.to(dtype).eval()


def inputs(contexts, seed=1, dtype=torch.float32, height=8, width=8):
    """UNet inputs for len(contexts) samples (cond/uncond rows), each with a one-token context."""
    g = torch.Generator().manual_seed(seed)
    batch = contexts.shape[0]
    sample = torch.randn(batch, FRAMES, 8, height, width, generator=g).to(dtype)
    return sample, torch.full((batch,), 0.7), contexts.to(dtype), torch.randn(batch, 3, generator=g).to(dtype)


def embedding(seed, dim=32):
    return torch.randn(1, 1, dim, generator=torch.Generator().manual_seed(seed))


def cond_uncond(seed=5):
    image = embedding(seed)
    return torch.cat([image, torch.zeros_like(image)])  # as SVD's CFG: the uncond embedding is zero


def run(unet, args):
    with torch.no_grad():
        return unet(*args).sample


def assert_close(actual, expected, rtol=1e-5):
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale, float((actual - expected).abs().max() / scale)
