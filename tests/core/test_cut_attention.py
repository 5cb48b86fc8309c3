"""VCUT's cached cross-attention on diffusers' UNetSpatioTemporalConditionModel (small config, random weights)."""
import copy

import pytest
import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from svd_helpers import assert_close, cond_uncond, embedding, inputs, run, small_svd_unet

from vcut.cut.attention import (MAX_CACHED_CONTEXTS, TEMPORAL, CachedCrossAttention, RemovedCrossAttention,
                                clear_caches, find_cross_attentions, patch_unet_, plan_patch)

def count_to_v_rows(unet):
    rows = []
    for module in unet.modules():
        if isinstance(module, CachedCrossAttention):
            module.to_v.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    return rows


def test_finds_16_spatial_and_16_temporal_cross_attentions_at_full_size():
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel()
    sites = find_cross_attentions(unet)
    assert len(sites) == 32
    assert sum(site.kind == TEMPORAL for site in sites) == 16


def test_exact_mode_equals_unpatched_model():
    unet = small_svd_unet()
    args = inputs(cond_uncond())
    expected = run(unet, args)
    patched = copy.deepcopy(unet)
    plan = patch_unet_(patched, "exact")
    assert len(plan.replacements) == len(find_cross_attentions(unet)) and not plan.skipped
    for _ in range(3):  # first call fills the cache, later calls reuse it
        assert_close(run(patched, args), expected)


def test_paper_mode_equals_unpatched_model_with_temporal_cross_attention_zeroed():
    unet = small_svd_unet()
    args = inputs(cond_uncond())
    patched = copy.deepcopy(unet)
    patch_unet_(patched, "paper")
    for site in find_cross_attentions(unet):
        if site.kind == TEMPORAL:
            site.module.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    expected = run(unet, args)
    assert_close(run(patched, args), expected)
    assert not torch.allclose(expected, run(small_svd_unet(), args))  # zeroing temporal attn2 changes the output


def test_to_v_runs_once_per_distinct_context_and_again_when_it_changes():
    unet = small_svd_unet()
    patch_unet_(unet, "exact")
    modules = [m for m in unet.modules() if isinstance(m, CachedCrossAttention)]
    rows = count_to_v_rows(unet)
    contexts = cond_uncond(seed=5)
    for step in range(4):  # four sampling steps, same image: 2 distinct contexts computed once per module
        run(unet, inputs(contexts, seed=step))
    assert sum(rows) == 2 * len(modules)
    assert all(m.vectors_computed == 2 for m in modules)
    run(unet, inputs(contexts[:1], seed=9))  # batch halves after the cut: cond rows only, still cached
    assert sum(rows) == 2 * len(modules)
    run(unet, inputs(cond_uncond(seed=6), seed=9))  # a new image: its embedding is new, the zero one is not
    assert sum(rows) == 3 * len(modules)


def test_exact_when_batch_changes_between_steps_and_rows_are_mixed():
    unet = small_svd_unet()
    patched = copy.deepcopy(unet)
    patch_unet_(patched, "exact")
    image_a, image_b = embedding(1), embedding(2)
    for contexts in (cond_uncond(), cond_uncond()[:1], torch.cat([image_a, image_b, image_a, torch.zeros_like(image_a)])):
        args = inputs(contexts, seed=contexts.shape[0])
        assert_close(run(patched, args), run(unet, args))


def test_exact_after_dtype_and_weight_changes():
    unet = small_svd_unet()
    patched = copy.deepcopy(unet)
    patch_unet_(patched, "exact")
    args = inputs(cond_uncond())
    run(patched, args)
    unet.double()
    patched.double()
    args64 = inputs(cond_uncond(), dtype=torch.float64)
    assert_close(run(patched, args64), run(unet, args64), rtol=1e-12)
    with torch.no_grad():  # a LoRA-like in-place weight change must not reuse stale vectors
        for model in (unet, patched):
            for site in find_cross_attentions(model):
                site.module.to_v.weight.mul_(1.5)
    assert_close(run(patched, args64), run(unet, args64), rtol=1e-12)


def test_multi_token_context_runs_real_attention():
    unet = small_svd_unet()
    patched = copy.deepcopy(unet)
    patch_unet_(patched, "exact")
    g = torch.Generator().manual_seed(3)
    contexts = torch.randn(2, 4, 32, generator=g)  # another node concatenated embeddings: 4 tokens
    args = inputs(contexts)
    assert_close(run(patched, args), run(unet, args))
    assert all(m.vectors_computed == 0 for m in patched.modules() if isinstance(m, CachedCrossAttention))


def test_cache_stays_bounded_over_many_runs_and_clears():
    unet = small_svd_unet()
    patch_unet_(unet, "exact")
    modules = [m for m in unet.modules() if isinstance(m, CachedCrossAttention)]
    for seed in range(100):
        run(unet, inputs(cond_uncond(seed=100 + seed), height=4, width=4))
        assert all(m.cached_contexts() <= MAX_CACHED_CONTEXTS for m in modules)
    clear_caches(unet)
    assert all(m.cached_contexts() == 0 for m in modules)


def test_patching_twice_is_idempotent_and_mode_can_change():
    unet = small_svd_unet()
    first = patch_unet_(unet, "exact")
    second = plan_patch(unet, "exact")
    assert not second.replacements and second.already_patched == len(first.replacements)
    assert second.parameters_removed == first.parameters_removed
    paper = patch_unet_(unet, "paper")  # temporal ones are rebuilt from the original attention
    assert all(isinstance(m, RemovedCrossAttention) for m in paper.replacements.values())
    back = patch_unet_(unet, "exact")
    assert len(back.replacements) == len(paper.replacements)
    args = inputs(cond_uncond())
    assert_close(run(unet, args), run(small_svd_unet(), args))


def test_foreign_attention_modules_are_left_alone_and_named():
    class OtherPackAttention(torch.nn.Module):
        def forward(self, x, encoder_hidden_states=None, **kwargs):
            return x * 0
    unet = small_svd_unet()
    name = find_cross_attentions(unet)[0].name
    parent, _, child = name.rpartition(".")
    setattr(unet.get_submodule(parent), child, OtherPackAttention())
    plan = patch_unet_(unet, "exact")
    assert [n for n, _ in plan.skipped] == [name]
    assert "OtherPackAttention" in plan.summary()
    assert isinstance(unet.get_submodule(name), OtherPackAttention)


def test_parameters_removed_are_reported_and_leave_the_module_tree():
    unet = small_svd_unet()
    before = sum(p.numel() for p in unet.parameters())
    plan = patch_unet_(unet, "paper")
    after = sum(p.numel() for p in unet.parameters())
    assert before - after == plan.parameters_removed > 0


def test_non_svd_unet_is_refused_with_its_name():
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), sample_size=8)
    with pytest.raises(ValueError, match="UNet2DConditionModel.*not an SVD UNet"):
        plan_patch(unet)
    with pytest.raises(ValueError, match="mode must be one of"):
        plan_patch(small_svd_unet(), "fast")
