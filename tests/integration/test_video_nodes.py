"""Video Extend, Join Video Segments and Drop Closing Frame on ComfyUI's own SVD model class (shrunk, random weights),
its KSampler and its executor; and the anchoring patches run by ONE PromptExecutor across several edited prompts
(as a server runs them) give the results of fresh runs.

Equalities are exact (torch.equal): the first k frames of each new segment are the previous segment's last k latent
frames; keyframes equal their anchors.
"""
import itertools
import logging

import harness
import pytest
import torch

FRAMES, K = 5, 2  # per segment, overlap (small: the machine has 2 cores)


def extend(model, previous, positive, negative, overlap=K, frames=FRAMES, image_from_previous=True):
    return {"class_type": "VCUTVideoExtend", "inputs": {
        "model": model, "previous": previous, "positive": positive, "negative": negative, "overlap": overlap,
        "frames": frames, "anchor_steps": 1.0, "jit_cfg": True, "image_from_previous": image_from_previous}}


def capture(value, key):
    return {"class_type": "VCUTTestCapture", "inputs": {"value": value, "key": key}}


def chained_prompt(segments, feature_cache=False):
    """TinySVD -> VCUT Patch Model -> Cut Step Scheduler (-> UNet Feature Cache) -> KSampler, then (Video Extend ->
    KSampler) per further segment; every segment decoded and joined by Join Video Segments."""
    prompt = {
        "src": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}},
        "ckpt": {"class_type": "VCUTTestCheckpoint", "inputs": {"ckpt_name": ""}},
        "vcut": {"class_type": "VCUTPatchModel", "inputs": {"model": ["src", 0], "mode": "exact"}},
        "cut": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["vcut", 0], "cut_step": 2,
                                                               "cut_fraction": 0.0, "after_cut": "drop",
                                                               "auto_threshold": 0.0}},
        "s1": harness.ksampler_node(["cut", 0], ["src", 1], ["src", 2], ["src", 3], steps=3),
    }
    model = ["cut", 0]
    if feature_cache:  # interval 2 over 3 steps: step 2 of every segment is a partial step
        prompt["fc"] = {"class_type": "VCUTFeatureCache", "inputs": {
            "model": model, "interval": 2, "branch": 0, "schedule": "uniform", "start_percent": 0.0,
            "end_percent": 1.0}}
        model = prompt["s1"]["inputs"]["model"] = ["fc", 0]
    overlap = K  # set once: each Video Extend's overlap output feeds the next one's and Join Video Segments'
    for i in range(2, segments + 1):
        prompt[f"x{i}"] = extend(model, [f"s{i - 1}", 0], ["src", 1], ["src", 2], overlap=overlap)
        model, overlap = [f"x{i}", 0], [f"x{i}", 4]  # chained: each Video Extend replaces the previous anchoring
        prompt[f"s{i}"] = harness.ksampler_node(model, [f"x{i}", 1], [f"x{i}", 2], [f"x{i}", 3], steps=3)
    join = {"overlap": overlap, "colour_match": "off", "crossfade": False}
    for i in range(1, segments + 1):
        prompt[f"d{i}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"s{i}", 0], "vae": ["ckpt", 2]}}
        prompt[f"c{i}"] = capture([f"s{i}", 0], f"seg{i}")
        join[f"segment_{i}"] = [f"d{i}", 0]
        prompt[f"ci{i}"] = capture([f"d{i}", 0], f"img{i}")
    prompt["join"] = {"class_type": "VCUTJoinVideoSegments", "inputs": join}
    prompt["cj"] = capture(["join", 0], "joined")
    prompt["cr"] = capture(["join", 1], "report")
    return prompt


@pytest.mark.parametrize("segments, feature_cache", [(2, False), (3, False), (3, True)])
def test_chained_segments_overlap_exactly_with_vcut_and_cut(comfy_nodes, segments, feature_cache, caplog):
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = harness.run_prompt(chained_prompt(segments, feature_cache))
    partial = [r for r in caplog.records if r.getMessage().startswith("VCUT run: ") and
               "UNet Feature Cache: " in r.getMessage() and "1 partial" in r.getMessage()]
    assert len(partial) == (segments if feature_cache else 0)  # a partial step in every segment, anchoring kept
    latents = [out[f"seg{i}"]["samples"] for i in range(1, segments + 1)]
    for before, after in itertools.pairwise(latents):
        assert after.shape[0] == FRAMES
        assert torch.equal(after[:K], before[-K:])  # the overlap is exact
        assert not torch.equal(after[K:], before[-(FRAMES - K):])  # new frames, not a copy
    joined = out["joined"]
    assert joined.shape[0] == FRAMES + (segments - 1) * (FRAMES - K)
    images = [out[f"img{i}"] for i in range(1, segments + 1)]
    assert torch.equal(joined[:FRAMES], images[0]) and torch.equal(joined[-(FRAMES - K):], images[-1][K:])
    assert out["report"].count("joint ") == segments - 1


def test_video_extend_conditions_on_the_previous_last_frame_and_keeps_inputs(comfy_nodes):
    node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTVideoExtend"]
    model = harness.tiny_svd()
    pos, neg, _ = harness.svd_conds(frames=4)
    previous = {"samples": torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    before = previous["samples"].clone()
    patched, p2, n2, latent, overlap = node.execute(model, previous, pos, neg, 3, 7, 1.0, True).result
    assert overlap == 3  # for Join Video Segments' overlap
    assert latent["samples"].shape == (7, 4, 8, 8) and torch.equal(latent["samples"][:3], before[3:])
    assert torch.count_nonzero(latent["samples"][3:]) == 0
    assert torch.equal(p2[0][1]["concat_latent_image"], before[-1:].expand(7, -1, -1, -1))
    assert torch.count_nonzero(n2[0][1]["concat_latent_image"]) == 0
    assert torch.equal(p2[0][0], pos[0][0])  # the CLIP image embedding is kept
    assert pos[0][1]["concat_latent_image"].shape[0] == 1 and torch.equal(previous["samples"], before)
    _, p3, _, _, _ = node.execute(model, previous, pos, neg, 3, 7, 1.0, True, image_from_previous=False).result
    assert p3 is pos  # the conditioning as it was given
    out = harness.sample(patched, p2, n2, latent, steps=3)
    assert torch.equal(out[:3], before[3:])
    assert model.wrappers == {} or all(not v for v in model.wrappers.values())  # the input model is unchanged


def test_video_extend_then_loop_conditioning_returns_to_the_start_image(comfy_nodes):
    """A long loop's last segment: Video Extend (overlap from the previous segment) + Loop Conditioning (closing
    frame = the start image), both anchorings in one sampling run."""
    extend_node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTVideoExtend"]
    loop_node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTLoopConditioning"]
    model = harness.tiny_svd()
    pos, neg, _ = harness.svd_conds(frames=5)
    image = pos[0][1]["concat_latent_image"][0]
    previous = {"samples": torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
    m, p, n, lat, _ = extend_node.execute(model, previous, pos, neg, 2, 5, 1.0, True, image_from_previous=False).result
    m2, p2, n2, lat2 = loop_node.execute(m, p, n, lat, "repeat", "empty", True, False, 1.0,
                                         "still background").result
    out = harness.sample(m2, p2, n2, lat2, steps=3)
    assert torch.equal(out[:2], previous["samples"][-2:]) and torch.equal(out[-1], image)


def test_interpolation_and_keyframes_equal_their_anchors(comfy_nodes):
    node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTFrameReplace"]
    model = harness.tiny_svd()
    pos, neg, latent = harness.svd_conds(frames=7)
    g = torch.Generator().manual_seed(4)
    for frames, count in (("0,-1", 2), ("0,3,6", 3)):
        anchors = torch.randn(count, 4, 8, 8, generator=g)
        patched, lat = node.execute(model, latent, frames, 1.0, True, anchor_latent={"samples": anchors}).result
        out = harness.sample(patched, pos, neg, lat, steps=3)
        listed = [0, 6] if count == 2 else [0, 3, 6]
        for j, f in enumerate(listed):
            assert torch.equal(out[f], anchors[j]), (frames, f)
        assert not torch.equal(out[1], anchors[0])


def test_drop_closing_frame(comfy_nodes):
    node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTDropClosingFrame"]
    frames = harness.real_frames(4)
    loop = torch.cat([frames, frames[:1]])
    assert torch.equal(node.execute(loop, True).result[0], frames)
    assert node.execute(loop, False).result[0] is loop


def test_bad_inputs_are_refused_with_clear_messages(comfy_nodes):
    m = comfy_nodes.NODE_CLASS_MAPPINGS
    extend_node, join, drop = m["VCUTVideoExtend"], m["VCUTJoinVideoSegments"], m["VCUTDropClosingFrame"]
    model = harness.tiny_svd()
    pos, neg, _ = harness.svd_conds(frames=4)
    prev = {"samples": torch.zeros(4, 4, 8, 8)}
    nan = {"samples": torch.full((4, 4, 8, 8), float("nan"))}
    seg = harness.real_frames(5)
    three_channels = [[neg[0][0], {**neg[0][1], "concat_latent_image": torch.zeros(1, 3, 8, 8)}]]
    three_d = [[neg[0][0], {**neg[0][1], "concat_latent_image": torch.zeros(4, 8, 8)}]]
    cases = [
        (lambda: extend_node.execute(model, prev, pos, neg, 4, 4, 1.0, True), "overlap: .*no new frame"),
        (lambda: extend_node.execute(model, prev, pos, neg, 5, 9, 1.0, True), "overlap: .*only 4"),
        (lambda: extend_node.execute(model, nan, pos, neg, 1, 4, 1.0, True), "previous: .*NaN"),
        (lambda: extend_node.execute(model, {"samples": torch.zeros(4, 8)}, pos, neg, 1, 4, 1.0, True), "previous"),
        (lambda: extend_node.execute(model, prev, neg[:0], neg, 1, 4, 1.0, True), "positive: no concat_latent"),
        (lambda: extend_node.execute(model, prev, pos, three_channels, 1, 4, 1.0, True),
         "negative: concat_latent_image: .*3.*4 channels"),
        (lambda: extend_node.execute(model, prev, pos, three_d, 1, 4, 1.0, True),
         r"negative: concat_latent_image has shape \(4, 8, 8\), expected \[1, 4, h, w\]"),
        (lambda: join.execute(seg, 1, "off", False), "segment_2: connect at least two"),
        (lambda: join.execute(seg, 1, "off", False, segment_3=seg), "segment_2: not connected"),
        (lambda: join.execute(seg, 2, "off", False, segment_2=seg[:2]), "segment_2: 2 frame"),
        (lambda: join.execute(seg, 0, "overlap", False, segment_2=seg), "colour_match"),
        (lambda: join.execute(seg, 1, "off", False, segment_2=seg[..., :2]), r"segment_2: .*got \(5, 64, 64, 2\)"),
        (lambda: join.execute(seg, 1, "off", False, segment_2=seg * float("nan")), "segment_2: .*NaN"),
        (lambda: drop.execute(seg[:2], True), "images: 2 frame"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_segments_of_another_size_are_resized_like_svd_conditioning(comfy_nodes):
    join = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTJoinVideoSegments"]
    frames = harness.real_frames(6, size=64)
    big = torch.nn.functional.interpolate(frames[3:].movedim(-1, 1), size=(96, 128), mode="bilinear",
                                          align_corners=False).movedim(1, -1)
    joined, report = join.execute(frames[:4], 1, "off", False, segment_2=big).result
    assert joined.shape == (6, 64, 64, 3) and "resized" in report
    import comfy.utils
    expected = comfy.utils.common_upscale(big.movedim(-1, 1), 64, 64, "bilinear", "center").movedim(1, -1)
    assert torch.equal(joined[4:], expected[1:].clamp(0, 1))


def test_grey_and_rgba_segments_join_as_rgb_with_colour_match(comfy_nodes):
    """One image check for every node (nodes/checks.py): a grey segment is used as RGB (OpenCV's colour conversion
    needs 3 channels), an alpha channel is ignored; the joined video is RGB."""
    join = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTJoinVideoSegments"]
    seg = harness.real_frames(5)
    grey = seg.mean(-1, keepdim=True)
    rgba = torch.cat([seg, torch.rand(5, 64, 64, 1)], -1)
    joined, _ = join.execute(grey, 1, "overlap", True, segment_2=rgba).result
    expected, _ = join.execute(grey.expand(-1, -1, -1, 3), 1, "overlap", True, segment_2=seg).result
    assert joined.shape == (9, 64, 64, 3) and torch.equal(joined, expected)


# ---- session correctness: one executor, one loaded model, prompts edited between runs ----

def session_prompt(frames, seed, cfg, key):
    """STIV Frame Replace (anchor_steps 0.5, JIT-CFG) feeding Loop Conditioning and a KSampler, and a second
    KSampler on the Frame Replace model alone: two sampling runs of clones of one patch in one prompt."""
    prompt = {
        "src": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": 5, "seed": 0}},
        "fr": {"class_type": "VCUTFrameReplace", "inputs": {"model": ["src", 0], "latent": ["src", 3],
                                                          "frames": frames, "anchor_steps": 0.5, "jit_cfg": True,
                                                          "positive": ["src", 1]}},
        "lc": {"class_type": "VCUTLoopConditioning", "inputs": {
            "model": ["fr", 0], "positive": ["src", 1], "negative": ["src", 2], "latent": ["fr", 1],
            "concat_layout": "sdslc", "init": "empty", "close_loop": True, "anchor_first": False,
            "anchor_steps": 1.0, "mask_layout": "still background"}},
        "ks": harness.ksampler_node(["lc", 0], ["lc", 1], ["lc", 2], ["lc", 3], steps=3),
        "ks2": harness.ksampler_node(["fr", 0], ["src", 1], ["src", 2], ["fr", 1], steps=2),
        "cap": capture(["ks", 0], key),
        "cap2": capture(["ks2", 0], key + "_direct"),
    }
    prompt["ks"]["inputs"].update(seed=seed, cfg=cfg)
    prompt["ks2"]["inputs"].update(seed=seed + 7)
    return prompt


def test_one_executor_across_edited_prompts_equals_fresh_runs(comfy_nodes):
    """As a server: one PromptExecutor with its cache, the same loaded model, the Frame Replace node edited and re-used
    between prompts (its cached, patched model sampled again). Every result equals a fresh executor's."""
    session = harness.Session()
    runs = [("0", 0, 2.5, "a"), ("0,-1", 0, 2.5, "b"), ("0", 1, 2.5, "c"), ("0", 0, 1.5, "d"), ("0", 0, 2.5, "e")]
    for frames, seed, cfg, key in runs:
        kept = session.run(session_prompt(frames, seed, cfg, key))
        fresh = harness.run_prompt(session_prompt(frames, seed, cfg, key))
        for name in (key, key + "_direct"):
            if name in kept:  # a cached KSampler does not re-run its Capture (same inputs): nothing new to compare
                assert torch.equal(kept[name]["samples"], fresh[name]["samples"]), name
        assert key in kept  # the edited branch re-ran in the kept executor
    image = harness.svd_conds(frames=5)[0][0][1]["concat_latent_image"][0]
    last = harness.run_prompt(session_prompt("0,-1", 0, 2.5, "z"))["z"]["samples"]
    assert torch.equal(last[-1], image)  # loop closure holds through both patches


def test_overlap_edited_on_the_first_video_extend_reaches_the_join_in_one_executor(comfy_nodes):
    """As a server: one PromptExecutor, the first Video Extend's overlap edited between prompts (2 -> 1 -> 2). The
    linked overlap outputs carry each value to the second Video Extend and to Join Video Segments, so the joined
    length follows it, and every result equals a fresh executor's."""
    session = harness.Session()
    for overlap in (K, 1, K):
        prompt = chained_prompt(3)
        prompt["x2"]["inputs"]["overlap"] = overlap
        kept, fresh = session.run(prompt), harness.run_prompt(prompt)
        assert "joined" in kept  # the join re-ran in the kept executor (its overlap input changed)
        assert kept["joined"].shape[0] == FRAMES + 2 * (FRAMES - overlap)
        for name in kept:  # a cached node does not re-run its Capture: compare what re-ran
            value = kept[name]["samples"] if isinstance(kept[name], dict) else kept[name]
            expected = fresh[name]["samples"] if isinstance(fresh[name], dict) else fresh[name]
            assert value == expected if isinstance(value, str) else torch.equal(value, expected), name
        latents = [fresh[f"seg{i}"]["samples"] for i in (1, 2, 3)]
        for before, after in itertools.pairwise(latents):
            assert torch.equal(after[:overlap], before[-overlap:])
