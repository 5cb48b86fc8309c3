"""ComfyUI glue for seamless chunked decoding of SVD video latents: Seamless Video Decode.

The plan and stitching are in ../decode (chunks.py). ComfyUI 0.8.0's VAE.decode splits a video into
free_memory / memory_used_decode frames per call and decodes each split as a whole video; SVD's VideoDecoder
(comfy/ldm/modules/temporal_ae.py) mixes frames with kernel-3 temporal convolutions and GroupNorm over all frames of
a call, so each split border is a seam. This node decodes windows with context frames on both sides and keeps their
centres, calling the same first_stage_model.decode and process_output as VAE.decode.
"""
from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch
from comfy.ldm.modules.temporal_ae import VideoDecoder
from comfy.sd import VAE
from comfy_api.latest import io

from ..decode import chunks
from . import comfy_compat
from .checks import Latent, core_settings
from .log import log


def is_svd_video_vae(vae: VAE) -> bool:
    """True for SVD's video VAE: ComfyUI builds it with a temporal_ae.VideoDecoder (comfy.sd.VAE, key
    decoder.mid.block_1.mix_factor)."""
    return isinstance(getattr(getattr(vae, "first_stage_model", None), "decoder", None), VideoDecoder)


def _latent_tensor(samples: Latent) -> torch.Tensor:
    """The LATENT's tensor as VAEDecode reads it (a nested latent: its first part), checked for NaN/inf."""
    if not isinstance(samples, dict) or not isinstance(samples.get("samples"), torch.Tensor):
        raise ValueError("samples: expected a LATENT (a dict with a 'samples' tensor)")
    latent = samples["samples"]
    if latent.is_nested:
        latent = latent.unbind()[0]
    if latent.ndim not in (4, 5) or latent.shape[0] == 0:
        raise ValueError(f"samples: expected a LATENT of shape [frames, channels, h, w], got {tuple(latent.shape)}")
    if latent.numel() == 0:  # before any kernel sees it (a zero height or width made torch's convolutions fail)
        raise ValueError(f"samples: the latent {tuple(latent.shape)} is empty (zero channels, height or width); "
                         "give a latent of at least 1 x 1 (e.g. from SVD_img2vid_Conditioning with width and "
                         "height of at least 8 pixels)")
    if not torch.isfinite(latent).all():
        raise ValueError("samples: the latent contains NaN or infinite values (a diverged sampler or a broken "
                         "upstream node); fix that before decoding")
    return latent


def _video_latent(latent: torch.Tensor, vae: VAE) -> torch.Tensor:
    """The latent as SVD frames [frames, 4, h, w]; the 5-D [frames, 4, 1, h, w] form is squeezed as VAE.decode does."""
    if latent.ndim == 5:
        if latent.shape[2] != 1:
            raise ValueError(f"samples: {tuple(latent.shape)} is a 5-D video latent of another model (SVD's frames "
                             f"are the batch: [frames, {vae.latent_channels}, h, w]); decode it with its own VAE")
        latent = latent[:, :, 0]
    if latent.shape[1] != vae.latent_channels:
        raise ValueError(f"samples: the latent has {latent.shape[1]} channels but this VAE (SVD's video VAE) "
                         f"decodes {vae.latent_channels}; connect the LATENT of an SVD sampler")
    return latent


class VCUTSeamlessVideoDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTSeamlessVideoDecode",
            display_name="Seamless Video Decode",
            category="vcut/video",
            description=("VAE Decode for SVD video that never shows chunk seams. SVD's VAE decoder mixes neighbouring "
                         "frames, so when memory is short and ComfyUI decodes a few frames at a time, the frames at "
                         "each chunk border lose their neighbours (a flicker every few frames). This node decodes "
                         "chunks with context frames on each side and keeps only their centres, so every frame sees "
                         "its real neighbours; the chunk size comes from ComfyUI's free-memory estimate unless set, "
                         "with spatial tiles (margins, feathered) when even that is too much. One chunk covering the "
                         "video gives exactly VAE Decode's result. Other VAEs (image VAEs) are decoded by ComfyUI's "
                         "own VAE decode, with a log line saying so."),
            inputs=[
                io.Latent.Input("samples", tooltip="The SVD video latent to decode ([frames, 4, h, w], e.g. from "
                                "KSampler after SVD_img2vid_Conditioning)."),
                io.Vae.Input("vae", tooltip="SVD's video VAE (from the SVD checkpoint). Another VAE is decoded by "
                             "ComfyUI's own VAE decode; the chunk settings then do nothing."),
                io.Boolean.Input("auto_chunk", default=True, tooltip="On: frames per call from ComfyUI's free-memory "
                                 "estimate (the whole video if it fits; tiles if even a chunk with its context does "
                                 "not). Off: use chunk_frames (and tile_size)."),
                io.Int.Input("chunk_frames", default=8, min=1, max=4096, tooltip="With auto_chunk off: latent frames "
                             "decoded per call, context included (this sets the memory). The video's length or "
                             "more = one call = exactly VAE Decode."),
                io.Int.Input("context_frames", default=4, min=0, max=64, tooltip="Frames decoded on each side of a "
                             "chunk's centre and then dropped, so each kept frame sees that many real neighbours. "
                             "More = closer to a single full decode, slower. Must leave centre frames: "
                             "chunk_frames > 2 x context_frames."),
                io.Int.Input("blend_frames", default=0, min=0, max=64, tooltip="Cross-fade this many frames on each "
                             "side of a chunk border (taken from the context; at most context_frames). 0 = hard cut "
                             "between centres."),
                io.Int.Input("tile_size", default=0, min=0, max=16384, step=64, tooltip="Spatial tiles of this many "
                             "pixels (a multiple of 8), for very small cards; 0 = no tiles unless auto_chunk needs "
                             "them. Each tile decodes all frames of its chunk together (time mixing kept)."),
                io.Int.Input("tile_overlap", default=64, min=0, max=1024, step=8, tooltip="Margin in pixels (a "
                             "multiple of 8) decoded around each tile and dropped; the inner half is feathered "
                             "between tiles. tile_size must exceed twice this."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="The decoded frames as an IMAGE batch.")],
        )

    @classmethod
    def execute(cls, samples: Latent, vae: VAE, auto_chunk: bool, chunk_frames: int, context_frames: int,
                blend_frames: int, tile_size: int, tile_overlap: int) -> io.NodeOutput:
        if vae is None or not hasattr(vae, "decode"):
            raise ValueError("vae: expected a VAE")
        vae.throw_exception_if_invalid()
        latent = _latent_tensor(samples)
        if not is_svd_video_vae(vae):
            log.warning("Seamless Video Decode: this VAE (%s) is not SVD's video VAE, so its decoder does not mix "
                        "frames and chunks have no temporal seams; decoding with ComfyUI's own VAE decode "
                        "(chunk and tile settings unused)", type(vae.first_stage_model).__name__)
            images = vae.decode(latent)
            if images.ndim == 5:  # as VAEDecode combines batches
                images = images.reshape(-1, *images.shape[-3:])
            return io.NodeOutput(images)

        latent = _video_latent(latent, vae)
        frames, channels, height, width = latent.shape
        scale = int(vae.upscale_ratio)
        chunks.check_context(context_frames, blend_frames)  # before the memory estimate uses them
        tile, margin = chunks.check_tiling(tile_size, tile_overlap, height, width, scale)

        def bytes_per_frame(h: int, w: int) -> float:  # ComfyUI's own estimate, as VAE.decode uses it
            return vae.memory_used_decode((1, channels, h, w), vae.vae_dtype)

        tile_h, tile_w = (min(height, tile), min(width, tile)) if tile else (height, width)
        needed = bytes_per_frame(tile_h, tile_w) * min(frames, 2 * context_frames + 1)
        comfy.model_management.load_models_gpu([vae.patcher], memory_required=needed,
                                               force_full_load=vae.disable_offload)
        if auto_chunk:
            free = comfy_compat.vae_free_memory(vae)
            chunk, auto_tile = chunks.choose_chunking(frames, tile_h, tile_w, context_frames, free,
                                                      bytes_per_frame, tile_context=margin)
            tile = tile if auto_tile is None else auto_tile
        else:  # more frames than the video: the whole video in one call, exactly VAE Decode
            chunk = min(chunk_frames, frames)
        with core_settings(frames="samples"):
            chunks.check_chunking(frames, chunk, context_frames, blend_frames)

        dtype = comfy_compat.vae_output_dtype(vae)

        def decode_part(part: torch.Tensor) -> torch.Tensor:
            part = part.to(vae.vae_dtype).to(vae.device)
            return vae.first_stage_model.decode(part).to(vae.output_device).to(dtype)

        def decode_tiled(tile: int | None) -> torch.Tensor:
            plan = chunks.plan_spans(frames, chunk, context_frames)
            tiles = (len(chunks.plan_spans(height, tile, margin)) * len(chunks.plan_spans(width, tile, margin))
                     if tile and tile < max(height, width) else 1)
            log.info("Seamless Video Decode: %d frames in %d call(s) of %d frames (context %d, blend %d)%s",
                     frames, len(plan), min(chunk, frames), context_frames, blend_frames,
                     f", {tiles} tiles of {tile * scale}px" if tiles > 1 else "")
            bar = comfy.utils.ProgressBar(len(plan) * tiles)

            def progress(done: int, total: int) -> None:
                bar.update_absolute(done, total)
                comfy.model_management.throw_exception_if_processing_interrupted()
            return chunks.decode_chunked(latent, decode_part, chunk, context_frames, blend_frames, tile=tile,
                                         tile_context=margin, scale=scale, progress=progress)

        def before_retry(smaller: int) -> None:
            log.warning("Seamless Video Decode: out of memory, retrying with %dpx tiles", smaller * scale)
            comfy.model_management.soft_empty_cache()
        try:
            raw = chunks.decode_until_it_fits(
                decode_tiled, tile, height, width, margin, before_retry=before_retry,
                is_out_of_memory=lambda error: isinstance(error, comfy.model_management.OOM_EXCEPTION))
        except chunks.NoSmallerTile as failed:
            raise RuntimeError(f"Seamless Video Decode ran out of memory with chunk_frames={chunk} and "
                               f"{failed.tile * scale}px tiles; lower context_frames or chunk_frames (auto_chunk "
                               f"off), or tile_overlap") from None
        images = vae.process_output(raw).movedim(1, -1)
        return io.NodeOutput(images)


NODES = [VCUTSeamlessVideoDecode]
