"""Seamless Video Decode on ComfyUI's own SVD video VAE: comfy.sd.VAE built from SVD's config (its VideoDecoder with
temporal convs), seeded random weights (bench/svd_vae.py), at 4x4 latents (32x32 pixels) so it runs on the CPU.

ComfyUI's chunking is emulated exactly: VAE.decode with batch_number = 4 decodes samples[x:x+4] one after another,
each as a whole video (comfy/sd.py, 0.8.0); here vae.decode is called on those same slices."""
import logging

import harness
import pytest
import torch
from svd_vae import svd_video_vae

NODE = "VCUTSeamlessVideoDecode"
_VAE = {}


def svd_vae():
    if "vae" not in _VAE:
        harness.init_comfy()
        _VAE["vae"] = svd_video_vae(seed=0)
    return _VAE["vae"]


def video_latent(frames, size=4, seed=1):
    return torch.randn(frames, 4, size, size, generator=torch.Generator().manual_seed(seed))


class SVDVideoSource:
    """Test-only source node: SVD's video VAE (built once, like a loaded checkpoint) and a random video latent."""
    FUNCTION = "load"
    RETURN_TYPES = ("VAE", "LATENT")
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 8, "min": 1}), "seed": ("INT", {"default": 1})}}

    def load(self, frames, seed):
        return svd_vae(), {"samples": video_latent(frames, seed=seed)}


@pytest.fixture(scope="module")
def nodes(comfy_nodes):
    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTTestSVDVideo"] = SVDVideoSource
    yield comfy_nodes
    _VAE.clear()  # unload before interpreter shutdown tears down ComfyUI's modules


def decode_inputs(auto_chunk=True, chunk_frames=8, context_frames=4, blend_frames=0, tile_size=0, tile_overlap=64):
    return {"auto_chunk": auto_chunk, "chunk_frames": chunk_frames, "context_frames": context_frames,
            "blend_frames": blend_frames, "tile_size": tile_size, "tile_overlap": tile_overlap}


def seamless(nodes, latent, vae=None, **settings):
    cls = nodes.NODE_CLASS_MAPPINGS[NODE]
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        return cls.execute({"samples": latent}, vae or svd_vae(), **decode_inputs(**settings)).result[0]


def test_node_is_registered_and_detects_the_svd_vae(nodes):
    assert NODE in harness.pack_node_ids()
    module = harness.pack_module().nodes.decode_nodes
    assert module.is_svd_video_vae(svd_vae()) and not module.is_svd_video_vae(harness.tiny_vae())


def test_one_chunk_equals_vae_decode_exactly_in_the_executor(nodes):
    frames = 8
    prompt = {
        "1": {"class_type": "VCUTTestSVDVideo", "inputs": {"frames": frames, "seed": 3}},
        "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 1], "vae": ["1", 0]}},
        "3": {"class_type": NODE, "inputs": {"samples": ["1", 1], "vae": ["1", 0], **decode_inputs()}},
        "4": {"class_type": NODE, "inputs": {"samples": ["1", 1], "vae": ["1", 0],
                                             **decode_inputs(auto_chunk=False, chunk_frames=frames)}},
        "5": {"class_type": NODE, "inputs": {"samples": ["1", 1], "vae": ["1", 0],
                                             **decode_inputs(auto_chunk=False, chunk_frames=6, context_frames=2)}},
    }
    for node, key in (("2", "reference"), ("3", "auto"), ("4", "whole"), ("5", "chunked")):
        prompt[f"c{node}"] = {"class_type": "VCUTTestCapture", "inputs": {"value": [node, 0], "key": key}}
    out = harness.run_prompt(prompt)
    reference = out["reference"]
    assert reference.shape == (frames, 32, 32, 3)
    assert torch.equal(out["auto"], reference)  # the CPU has room for the whole video: one call
    assert torch.equal(out["whole"], reference)
    assert out["chunked"].shape == reference.shape and not torch.equal(out["chunked"], reference)


def border_frames(borders, frames):
    """The frames next to each chunk border (the last frame before it and the first after)."""
    return sorted({f for b in borders for f in (b - 1, b) if 0 < b < frames})


def test_chunk_of_4_with_context_is_far_closer_than_comfyui_chunking(nodes, capsys):
    frames, chunk = 16, 4
    z = video_latent(frames, seed=5)
    vae = svd_vae()
    module = harness.pack_module().decode
    with torch.inference_mode():
        full = vae.decode(z)
        comfy_chunks = torch.cat([vae.decode(z[i:i + chunk]) for i in range(0, frames, chunk)])
    err = lambda images: (images - full).abs()  # noqa: E731  (a one-line helper)
    comfy_borders = border_frames(range(chunk, frames, chunk), frames)
    rows = {"ComfyUI chunks of 4": (err(comfy_chunks), comfy_borders)}
    for context in (2, 4):
        window = chunk + 2 * context  # 4 centre frames per call, as many as ComfyUI keeps
        plan = module.plan_spans(frames, window, context)
        ours = seamless(nodes, z, auto_chunk=False, chunk_frames=window, context_frames=context)
        rows[f"ours, centre 4, context {context}"] = (err(ours), border_frames([s.keep_start for s in plan], frames))
    with capsys.disabled():
        print(f"\nSVD video VAE (random weights), {frames} frames at 32x32, |decode - single full decode| on 0..1:")
        for name, (e, borders) in rows.items():
            print(f"  {name:32s} border frames {borders}: max {e[borders].max():.4f} mean {e[borders].mean():.5f}; "
                  f"all frames: max {e.max():.4f} mean {e.mean():.5f}")
    comfy_err, _ = rows["ComfyUI chunks of 4"]
    ours4, ours4_borders = rows["ours, centre 4, context 4"]
    ours2, _ = rows["ours, centre 4, context 2"]
    # border frames: ours with context 4 at least 4x closer than ComfyUI's chunking (max and mean), more context
    # closer still; ComfyUI's border frames compared at its own borders, ours at ours (and everywhere)
    assert ours4[ours4_borders].max() * 4 < comfy_err[comfy_borders].max()
    assert ours4[ours4_borders].mean() * 4 < comfy_err[comfy_borders].mean()
    assert ours4.max() < ours2.max() < comfy_err.max()
    assert ours4[comfy_borders].max() * 4 < comfy_err[comfy_borders].max()


def test_spatial_tiles_on_the_svd_vae(nodes):
    z = video_latent(2, size=8, seed=7)  # 64x64 pixels
    vae = svd_vae()
    with torch.inference_mode():
        full = vae.decode(z)
    untiled = seamless(nodes, z, auto_chunk=False, chunk_frames=2, tile_size=64, tile_overlap=16)
    assert torch.equal(untiled, full)  # tile_size = the frame: no tiles
    tight = seamless(nodes, z, auto_chunk=False, chunk_frames=2, tile_size=32, tile_overlap=0)
    margin = seamless(nodes, z, auto_chunk=False, chunk_frames=2, tile_size=48, tile_overlap=16)
    assert margin.shape == tight.shape == full.shape and margin.min() >= 0 and margin.max() <= 1
    # margins (2 latent pixels, feathered over 1) bring the tiles closer to the full decode than plain tiles
    assert (margin - full).abs().mean() < (tight - full).abs().mean()


def test_out_of_memory_retries_with_smaller_tiles_then_says_what_to_lower(nodes, monkeypatch, caplog):
    """ComfyUI's OOM_EXCEPTION from the VAE's decode: retried with half-size tiles (logged), and when no tile with a
    centre is left, a message that names what to lower."""
    import comfy.model_management
    z = video_latent(2, size=8, seed=3)  # 64x64 pixels
    vae = svd_vae()
    decode = vae.first_stage_model.decode
    limit = {"side": 6}  # latent pixels a call may have on a side before "out of memory"

    def tight_memory(part, *args, **kwargs):
        if max(part.shape[-2:]) > limit["side"]:
            raise comfy.model_management.OOM_EXCEPTION("out of memory (test)")
        return decode(part, *args, **kwargs)
    monkeypatch.setattr(vae.first_stage_model, "decode", tight_memory)
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = seamless(nodes, z, vae, auto_chunk=False, chunk_frames=2, tile_overlap=8)
    assert out.shape == (2, 64, 64, 3) and torch.isfinite(out).all()
    assert "out of memory, retrying with 32px tiles" in caplog.text  # 64 -> 32 px (4 latent + 1 margin a side)
    limit["side"] = 2
    with pytest.raises(RuntimeError, match=r"ran out of memory with chunk_frames=2 and 32px tiles; lower "
                                           r"context_frames or chunk_frames \(auto_chunk off\), or tile_overlap"):
        seamless(nodes, z, vae, auto_chunk=False, chunk_frames=2, tile_overlap=8)


def test_progress_bar_over_chunks_and_the_input_is_not_modified(nodes):
    import comfy.utils
    updates = []
    z = video_latent(8)
    before = z.clone()
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        seamless(nodes, z, auto_chunk=False, chunk_frames=4, context_frames=1)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    calls = len(harness.pack_module().decode.plan_spans(8, 4, 1))
    assert calls == 3 and updates == [(i + 1, calls) for i in range(calls)]
    assert torch.equal(z, before)  # the input LATENT is not modified


def test_image_vae_defers_to_comfyui_with_a_clear_message(nodes, caplog):
    vae = harness.tiny_vae()
    z = video_latent(3, size=4, seed=2)
    with caplog.at_level(logging.WARNING):
        out = seamless(nodes, z, vae=vae, auto_chunk=False, chunk_frames=2, context_frames=0)
    assert "is not SVD's video VAE" in caplog.text and "ComfyUI's own VAE decode" in caplog.text
    with torch.inference_mode():
        assert torch.equal(out, nodes.VAEDecode().decode(vae, {"samples": z})[0])


def test_bad_inputs_name_the_input(nodes):
    z = video_latent(8)
    cases = [
        (dict(latent=torch.randn(8, 16, 4, 4)), "samples: the latent has 16 channels"),
        (dict(latent=torch.randn(1, 4, 8, 4, 4)), "5-D video latent of another model"),
        (dict(latent=torch.randn(4, 4)), r"samples: expected a LATENT of shape"),
        (dict(latent=z.clone().index_fill_(0, torch.tensor([3]), float("nan"))), "samples: .*NaN"),
        (dict(chunk_frames=0), "chunk_frames must be at least 1"),
        (dict(chunk_frames=6, context_frames=3), "leaves no centre frames"),
        (dict(chunk_frames=7, context_frames=2, blend_frames=3), "blend_frames"),
        (dict(tile_size=100), "tile_size must be a multiple of 8"),
        (dict(tile_size=16, tile_overlap=8), "tile_overlap=8 .* leaves no centre"),
    ]
    for case, message in cases:
        settings = {"auto_chunk": False, "chunk_frames": 4, "context_frames": 1, **case}
        latent = settings.pop("latent", z)
        with pytest.raises(ValueError, match=message):
            seamless(nodes, latent, **settings)
    with pytest.raises(ValueError, match="samples: expected a LATENT"):
        nodes.NODE_CLASS_MAPPINGS[NODE].execute(z, svd_vae(), **decode_inputs())


def test_zero_size_latents_are_refused_before_any_kernel(nodes):
    """A latent of height or width 0 reached torch's convolutions (a raw kernel error) before; 0 frames too."""
    for shape in ((8, 4, 0, 4), (8, 4, 4, 0), (3, 4, 1, 0, 4)):
        for vae in (svd_vae(), harness.tiny_vae()):  # SVD's video VAE and the image-VAE path alike
            with pytest.raises(ValueError, match=r"samples: the latent \(.*\) is empty \(zero channels, height or "
                                                 r"width\)"):
                seamless(nodes, torch.zeros(shape), vae=vae, auto_chunk=False, chunk_frames=4, context_frames=1)
    with pytest.raises(ValueError, match=r"samples: expected a LATENT of shape .* got \(0, 4, 4, 4\)"):
        seamless(nodes, torch.zeros(0, 4, 4, 4))


def test_bad_chunk_in_a_prompt_is_reported_by_the_executor(nodes):
    prompt = {"1": {"class_type": "VCUTTestSVDVideo", "inputs": {"frames": 3, "seed": 1}},
              "2": {"class_type": NODE, "inputs": {"samples": ["1", 1], "vae": ["1", 0],
                                                   **decode_inputs(auto_chunk=False, chunk_frames=2)}},
              "3": {"class_type": "VCUTTestCapture", "inputs": {"value": ["2", 0], "key": "out"}}}
    with pytest.raises(RuntimeError, match="context_frames=4 .* chunk_frames=2 leaves no centre frames"):
        harness.run_prompt(prompt)


def test_chunk_frames_beyond_the_video_decode_it_in_one_call(nodes):
    """chunk_frames larger than the video (auto_chunk off) is one call over the whole video: VAE Decode's result."""
    z = video_latent(3)
    with torch.inference_mode():
        whole = svd_vae().decode(z)
    assert torch.equal(seamless(nodes, z, auto_chunk=False, chunk_frames=8), whole)


@pytest.mark.parametrize("fp16_intermediates", [False, True])
def test_output_dtype_is_the_one_core_vae_decode_returns(nodes, monkeypatch, fp16_intermediates):
    """The IMAGE's dtype is core VAE Decode's on the same VAE: float32 on 0.8.0, vae_output_dtype() on 0.30.0 and
    later (float16 under --fp16-intermediates, #12953; the case runs where this ComfyUI has that option)."""
    from comfy.cli_args import args
    if fp16_intermediates:
        if not hasattr(args, "fp16_intermediates"):
            pytest.skip("this ComfyUI has no --fp16-intermediates")
        monkeypatch.setattr(args, "fp16_intermediates", True)
    z = video_latent(5, seed=4)
    with torch.inference_mode():
        core = nodes.VAEDecode().decode(svd_vae(), {"samples": z})[0]
    whole = seamless(nodes, z)  # one chunk: VAE Decode's frames
    chunked = seamless(nodes, z, auto_chunk=False, chunk_frames=3, context_frames=1)
    assert whole.dtype == chunked.dtype == core.dtype
    assert core.dtype == (torch.float16 if fp16_intermediates else torch.float32)
    assert float((whole.float() - core.float()).abs().max()) <= 1e-3


def test_auto_chunk_sizes_chunks_with_the_patchers_free_memory(nodes, monkeypatch, caplog):
    """Where the VAE's patcher has get_free_memory (0.30.0 and later: it counts what dynamic VRAM can reclaim), the
    chunk size follows it, as core VAE.decode's batches do; 0.8.0 has none and model_management's is used."""
    vae = svd_vae()
    if not hasattr(vae.patcher, "get_free_memory"):
        pytest.skip("this ComfyUI's ModelPatcher has no get_free_memory")
    per_frame = vae.memory_used_decode((1, 4, 4, 4), vae.vae_dtype)
    monkeypatch.setattr(vae.patcher, "get_free_memory", lambda device: 5 * per_frame)
    with caplog.at_level(logging.INFO, logger="vcut"):
        seamless(nodes, video_latent(8), context_frames=1)
    assert "8 frames in 2 call(s) of 5 frames" in caplog.text
