"""STIV Frame Replace, Loop Conditioning and ALSS Loop Clip on ComfyUI's own SVD model, KSampler and executor.

The equalities are exact (torch.equal): anchored frames of the sampled latent are the anchor, the loop's last
frame is the first image's latent, and outside the FGSM mask every frame is the image latent. JIT-CFG is checked
by recording every UNet call (a forward pre-hook on the test's own tiny model) next to the sampler's latent.
"""
import harness
import pytest
import torch

FRAMES = 4  # small: the machine has 2 cores
H = W = 32


@pytest.fixture()
def loop_nodes(comfy_nodes):
    m = comfy_nodes.NODE_CLASS_MAPPINGS
    return m["VCUTFrameReplace"], m["VCUTLoopConditioning"], m["VCUTALSSLoopClip"]


def frame_replace(node, model, latent, frames="0", anchor_steps=1.0, jit_cfg=True, **kw):
    return node.execute(model, latent, frames, anchor_steps, jit_cfg, **kw).result


def loop_conditioning(node, model, pos, neg, latent, layout="sdslc", init="inverted noise", close_loop=True,
                      anchor_first=True, anchor_steps=1.0, mask_layout="still background", motion_mask=None):
    return node.execute(model, pos, neg, latent, layout, init, close_loop, anchor_first, anchor_steps, mask_layout,
                        motion_mask=motion_mask).result


def conds(frames):
    return harness.svd_conds(frames=frames, height=H, width=W)


def block_mask(top=8, bottom=24, left=0, right=16):
    """A pixel MASK aligned to 8x8 blocks, so that it is exactly binary in the latent."""
    mask = torch.zeros(1, H, W)
    mask[:, top:bottom, left:right] = 1.0
    return mask, mask[0, ::8, ::8] > 0  # the latent cells inside


def test_first_and_last_frame_equal_the_anchor_exactly(loop_nodes):
    model = harness.tiny_svd()
    pos, neg, latent = conds(FRAMES)
    image = pos[0][1]["concat_latent_image"]
    patched, anchored_latent = frame_replace(loop_nodes[0], model, latent, "0,-1", positive=pos)
    out = harness.sample(patched, pos, neg, anchored_latent)
    assert torch.equal(out[0], image[0]) and torch.equal(out[-1], image[0])
    plain = harness.sample(model, pos, neg, latent)
    assert not torch.allclose(plain[0], image[0], atol=1e-2)  # plain SVD drifts from the image
    assert not torch.equal(out[1], image[0])


def test_keyframes_anchor_latents_and_spatial_mask(loop_nodes):
    model = harness.tiny_svd()
    pos, neg, latent = conds(5)
    g = torch.Generator().manual_seed(5)
    anchors = torch.randn(2, 4, 3, 5, generator=g)  # another size than the video: resized like SVD does
    mask, inside = block_mask()
    patched, lat = frame_replace(loop_nodes[0], model, latent, "1,-2", anchor_latent={"samples": anchors}, mask=mask)
    out = harness.sample(patched, pos, neg, lat)
    import comfy.utils
    expected = comfy.utils.common_upscale(anchors, W // 8, H // 8, "bilinear", "center")
    assert torch.equal(out[1][:, inside], expected[0][:, inside])
    assert torch.equal(out[3][:, inside], expected[1][:, inside])
    assert not torch.equal(out[1][:, ~inside], expected[0][:, ~inside])  # only the masked region is anchored


def test_anchor_image_of_another_size_is_resized_like_svd_conditioning(loop_nodes):
    vae = harness.tiny_vae()
    model = harness.tiny_svd()
    pos, neg, latent = conds(3)
    image = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(2))
    patched, lat = frame_replace(loop_nodes[0], model, latent, "0", anchor_image=image, vae=vae)
    import comfy.utils
    pixels = comfy.utils.common_upscale(image.movedim(-1, 1), W, H, "bilinear", "center").movedim(1, -1)
    expected = vae.encode(pixels)
    out = harness.sample(patched, pos, neg, lat, steps=2)
    assert torch.equal(out[0], expected[0].float())


def record_calls(model):
    """Every UNet call's input (noise + concat channels), context and branch order, plus the sampler's latent."""
    calls, sampler_x = [], []

    def unet_pre_hook(module, args, kwargs):
        calls.append((args[0].detach().clone(), kwargs["context"].detach().clone(),
                      list(kwargs["transformer_options"]["cond_or_uncond"])))

    def probe(executor, m, conds, x_in, timestep, model_options):
        sampler_x.append((x_in.detach().clone(), timestep.detach().clone()))
        return executor(m, conds, x_in, timestep, model_options)

    import comfy.patcher_extension
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, "test_probe", probe)
    handle = model.model.diffusion_model.register_forward_pre_hook(unet_pre_hook, with_kwargs=True)
    return calls, sampler_x, handle


@pytest.mark.parametrize("jit_cfg", [True, False])
def test_jit_cfg_unconditional_rows_carry_no_anchor_and_no_image(loop_nodes, jit_cfg):
    import comfy.sample
    model = harness.tiny_svd()
    pos, neg, _ = conds(FRAMES)
    neg = [[pos[0][0], dict(pos[0][1])]]  # an uncond that *does* hold the image: JIT-CFG must zero it
    image = pos[0][1]["concat_latent_image"]
    video = {"samples": torch.randn(FRAMES, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))}
    patched, lat = frame_replace(loop_nodes[0], model, video, "0", jit_cfg=jit_cfg, positive=pos)
    # Sample the un-anchored video (denoise 0.5) so the sampler's latent differs from the anchor on frame 0.
    calls, sampler_x, handle = record_calls(patched)
    try:
        out = harness.sample(patched, pos, neg, video, steps=3, denoise=0.5, seed=3)
    finally:
        handle.remove()
    assert torch.equal(out[0], image[0])
    ms = model.model.model_sampling
    noise = comfy.sample.prepare_noise(video["samples"], 3)
    anchor_model = model.model.latent_format.process_in(image)
    assert len(calls) == len(sampler_x) == 3
    first_x, first_sigma = sampler_x[0]  # the un-anchored video really differs from the anchor on frame 0
    assert not torch.allclose(first_x[:1], anchor_model + first_sigma[0] * noise[:1], atol=1e-2)
    for (unet_in, context, branches), (x_in, sigma) in zip(calls, sampler_x, strict=False):
        assert sorted(branches) == [0, 1]
        rows = {b: slice(i * FRAMES, (i + 1) * FRAMES) for i, b in enumerate(branches)}
        cond, uncond = unet_in[rows[0]], unet_in[rows[1]]
        s = sigma.reshape(-1, 1, 1, 1)
        expected_anchor = ms.calculate_input(sigma[:1], anchor_model + s[:1] * noise[:1])
        torch.testing.assert_close(cond[:1, :4], expected_anchor, rtol=1e-6, atol=1e-6)  # anchor at noise level
        torch.testing.assert_close(cond[1:, :4], ms.calculate_input(sigma[1:], x_in[1:]), rtol=1e-6, atol=1e-6)
        assert torch.equal(cond[:, 4:], image.expand(FRAMES, -1, -1, -1))
        if jit_cfg:
            torch.testing.assert_close(uncond[:, :4], ms.calculate_input(sigma, x_in), rtol=1e-6, atol=1e-6)
            assert not torch.equal(uncond[:1, :4], cond[:1, :4])  # the sampler's own latent, not the anchor
            assert torch.count_nonzero(uncond[:, 4:]) == 0  # no image latent
            assert torch.count_nonzero(context[rows[1]]) == 0  # no CLIP image embedding
        else:
            assert torch.equal(uncond[:1, :4], cond[:1, :4])  # both branches anchored
            assert torch.equal(uncond[:, 4:], cond[:, 4:])


def test_anchor_steps_fraction_anchors_the_first_steps_only(loop_nodes):
    model = harness.tiny_svd()
    pos, neg, latent = conds(3)
    image = pos[0][1]["concat_latent_image"]
    patched, lat = frame_replace(loop_nodes[0], model, latent, "0", anchor_steps=0.5, jit_cfg=False, positive=pos)
    calls, sampler_x, handle = record_calls(patched)
    try:
        out = harness.sample(patched, pos, neg, lat, steps=4)
    finally:
        handle.remove()
    assert not torch.equal(out[0], image[0])  # released: not snapped at the end
    ms = model.model.model_sampling
    anchored = []
    for (unet_in, _, _), (x_in, sigma) in zip(calls, sampler_x, strict=False):
        anchored.append(not torch.equal(unet_in[:1, :4], ms.calculate_input(sigma[:1], x_in[:1])))
    assert anchored == [True, True, False, False]  # 0.5 of 4 steps


def test_loop_closure_and_layouts(loop_nodes):
    model = harness.tiny_svd()
    pos, neg, latent = conds(FRAMES)  # even: rounded up to 5
    image = pos[0][1]["concat_latent_image"]
    patched, p2, n2, lat = loop_conditioning(loop_nodes[1], model, pos, neg, latent)
    assert lat["samples"].shape[0] == FRAMES + 1
    assert all(torch.equal(lat["samples"][i], image[0]) for i in range(FRAMES + 1))  # inverted-noise init
    concat = p2[0][1]["concat_latent_image"]
    assert torch.equal(concat[0], image[0]) and torch.equal(concat[-1], image[0])  # SDSLC, Eq. 8
    assert torch.count_nonzero(concat[1:-1]) == 0
    assert torch.count_nonzero(n2[0][1]["concat_latent_image"]) == 0
    assert pos[0][1]["concat_latent_image"].shape[0] == 1  # inputs untouched
    out = harness.sample(patched, p2, n2, lat)
    assert out.shape[0] == FRAMES + 1
    assert torch.equal(out[-1], image[0]) and torch.equal(out[0], image[0])  # loop closure
    assert not torch.equal(out[2], image[0])
    _, p3, _, lat3 = loop_conditioning(loop_nodes[1], model, pos, neg, latent, layout="repeat", init="empty",
                                       anchor_first=False)
    assert all(torch.equal(p3[0][1]["concat_latent_image"][i], image[0]) for i in range(FRAMES + 1))
    assert torch.count_nonzero(lat3["samples"][:-1]) == 0 and torch.equal(lat3["samples"][-1], image[0])


@pytest.mark.parametrize("layout", ["still background", "paper eq. 10"])
def test_fgsm_outside_the_mask_every_frame_is_the_image(loop_nodes, layout):
    model = harness.tiny_svd()
    pos, neg, latent = conds(5)
    image = pos[0][1]["concat_latent_image"][0]
    mask, inside = block_mask()
    patched, p2, n2, lat = loop_conditioning(loop_nodes[1], model, pos, neg, latent, motion_mask=mask,
                                             mask_layout=layout, close_loop=False, anchor_first=False)
    out = harness.sample(patched, p2, n2, lat, denoise=0.8)
    if layout == "still background":
        for i in range(5):
            assert torch.equal(out[i][:, ~inside], image[:, ~inside])
        assert not torch.equal(out[2][:, inside], image[:, inside])  # the salient region moves
    else:  # Eq. 10: [M0, ones..., M0] -- the background is held on the end frames only
        assert torch.equal(out[0][:, ~inside], image[:, ~inside]) and torch.equal(out[4][:, ~inside], image[:, ~inside])
        assert not torch.equal(out[2][:, ~inside], image[:, ~inside])


def test_bad_inputs_are_refused_with_clear_messages(loop_nodes):
    replace, loop, clip = loop_nodes
    model = harness.tiny_svd()
    pos, neg, latent = conds(FRAMES)
    cases = [
        (lambda: frame_replace(replace, model, latent, "4", positive=pos), "out of range"),
        (lambda: frame_replace(replace, model, latent, "0,-4", positive=pos), "twice"),
        (lambda: frame_replace(replace, model, latent, "0"), "give an anchor"),
        (lambda: frame_replace(replace, model, latent, "0,1,2", anchor_latent={"samples": torch.zeros(2, 4, 8, 8)}),
         "anchor"),
        (lambda: frame_replace(replace, model, latent, "0", anchor_image=torch.rand(1, 64, 64, 3)), "vae"),
        (lambda: frame_replace(replace, model, latent, "0", positive=pos, mask=torch.zeros(1, H, W)), "all zeros"),
        (lambda: frame_replace(replace, model, latent, "0", positive=pos, mask=torch.ones(3, H, W)), "mask"),
        (lambda: frame_replace(replace, model, {"samples": torch.zeros(1, 4, 8, 8)}, "0", positive=pos), "2 frames"),
        (lambda: frame_replace(replace, model, latent, "0", anchor_steps=1.5, positive=pos), "anchor_steps"),
        (lambda: loop_conditioning(loop, model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}), "at least 3"),
        (lambda: loop_conditioning(loop, model, neg[:0], neg, latent), "concat_latent_image"),
        (lambda: loop_conditioning(loop, model, pos, neg, latent, motion_mask=torch.zeros(1, H, W)), "all zeros"),
        (lambda: loop_conditioning(loop, model, pos, neg, latent, motion_mask=torch.ones(3, H, W)), "motion_mask"),
        (lambda: clip.execute(torch.rand(1, 8, 8, 3), 2, 2, 0, 0, "error"), "at least 2"),
        (lambda: clip.execute(torch.rand(10, 8, 8, 3), 8, 6, 0, 0, "error"), "largest forward_frames that fits is 2"),
        (lambda: clip.execute(torch.rand(10, 8, 8, 3), 2, 3, 0, 0, "error"), "even"),
        (lambda: clip.execute(torch.rand(10, 8, 8, 3), 2, 2, 0, 10, "error"), "start"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_all_ones_mask_equals_no_mask(loop_nodes):
    import comfy.patcher_extension
    model = harness.tiny_svd()
    pos, neg, latent = conds(3)

    def keep_of(patched):  # the anchoring's typed settings, attached to the clone (a tuple: STIV Frame Replace stacks)
        return harness.pack_module().nodes.run.feature_config(patched, "vcut_frame_replace")[0].keep

    masked = frame_replace(loop_nodes[0], model, latent, "0", positive=pos, mask=torch.ones(1, H, W))
    unmasked = frame_replace(loop_nodes[0], model, latent, "0", positive=pos)
    assert torch.equal(keep_of(masked[0]), keep_of(unmasked[0]))
    assert torch.equal(masked[1]["samples"], unmasked[1]["samples"])
    assert model.wrappers.get(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, {}) == {}  # input model untouched
    assert model.get_attachment("vcut_frame_replace") is None


def test_alss_loop_clip(loop_nodes):
    clip = loop_nodes[2]
    frames = harness.real_frames(13)
    images, indices = clip.execute(frames, 5, 3, 4, 0, "error").result
    idx = [int(i) for i in indices.split(",")]
    assert len(idx) == 9 and idx[:5] == [0, 3, 6, 9, 12] and idx[-1] == 0
    assert torch.equal(images, frames[idx]) and torch.equal(images[0], images[-1])
    images, indices = clip.execute(frames, 8, 6, 0, 0, "reduce forward_frames").result
    assert indices == "0,6,12,6,0" or indices.startswith("0,6,12,")  # f reduced to 3 (13 frames fit s=6)
    assert images.shape[0] == 5 and indices.endswith(",0")


def test_alss_loop_clip_at_the_widget_max_forward_frames(loop_nodes):
    """The widget's largest forward_frames (read from the running ComfyUI's node definition) gives its clip."""
    clip = loop_nodes[2]
    f = clip.INPUT_TYPES()["required"]["forward_frames"][1]["max"]
    stride = 6
    frames = torch.rand(stride * (f - 1) + 1, 2, 2, 3)  # tiny frames: the clip's indices are what is checked
    images, indices = clip.execute(frames, f, stride, 5, 0, "error").result
    idx = [int(i) for i in indices.split(",")]
    assert len(idx) == 2 * f - 1 and idx[0] == idx[-1] == 0 and idx[f - 1] == stride * (f - 1)
    back = idx[f - 1:]
    assert all(a - b in (2, 4, 6, 8) for a, b in zip(back[:-1], back[1:], strict=True))
    assert torch.equal(images, frames[idx])


# ---- one graph with every loop node and the VCUT nodes through ComfyUI's executor (the example workflows are run
# by test_workflows.py) ----

def test_all_loop_nodes_and_cut_nodes_in_one_graph(comfy_nodes):
    """Loop Conditioning -> STIV Frame Replace -> VCUT Patch Model -> Cut Step Scheduler -> KSampler, plus ALSS."""
    prompt = {
        "1": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}},
        "2": {"class_type": "VCUTLoopConditioning", "inputs": {
            "model": ["1", 0], "positive": ["1", 1], "negative": ["1", 2], "latent": ["1", 3],
            "concat_layout": "sdslc", "init": "inverted noise", "close_loop": True, "anchor_first": False,
            "anchor_steps": 1.0, "mask_layout": "still background"}},
        "3": {"class_type": "VCUTFrameReplace", "inputs": {
            "model": ["2", 0], "latent": ["2", 3], "frames": "0", "anchor_steps": 1.0, "jit_cfg": True,
            "positive": ["2", 1]}},
        "4": {"class_type": "VCUTPatchModel", "inputs": {"model": ["3", 0], "mode": "exact"}},
        "5": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["4", 0], "cut_step": 2, "cut_fraction": 0.0,
                                                            "after_cut": "drop", "auto_threshold": 0.0}},
        "6": harness.ksampler_node(["5", 0], ["2", 1], ["2", 2], ["3", 1], steps=3),
        "7": {"class_type": "VCUTTestCapture", "inputs": {"value": ["6", 0], "key": "latent"}},
        "8": {"class_type": "VCUTTestCheckpoint", "inputs": {"ckpt_name": ""}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["8", 2]}},
        "10": {"class_type": "VCUTALSSLoopClip", "inputs": {"images": ["9", 0], "forward_frames": 3, "stride": 2,
                                                          "seed": 0, "start": 0, "if_too_short": "error"}},
        "11": {"class_type": "VCUTTestCapture", "inputs": {"value": ["10", 0], "key": "clip"}},
    }
    out = harness.run_prompt(prompt)
    image = harness.svd_conds(frames=FRAMES)[0][0][1]["concat_latent_image"][0]
    samples = out["latent"]["samples"]
    assert samples.shape[0] == FRAMES + 1
    assert torch.equal(samples[0], image) and torch.equal(samples[-1], image)
    assert out["clip"].shape[0] == 5 and torch.equal(out["clip"][0], out["clip"][-1])
