"""VCUT's one-token cross-attention broadcast on diffusers' UNetSpatioTemporalConditionModel (small config, random weights)."""
import copy

import pytest
import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel
from svd_helpers import assert_close, cond_uncond, embedding, inputs, run, small_svd_unet

from vcut.bench.diffusers_reference import patch_unet_
from vcut.cut.accounting import parameter_count
from vcut.cut.attention import (
    TEMPORAL,
    BroadcastCrossAttention,
    RemovedCrossAttention,
    find_cross_attentions,
    plan_patch,
    unread_parameter_count,
)


def count_to_v_rows(unet):
    rows = []
    for module in unet.modules():
        if isinstance(module, BroadcastCrossAttention):
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
    for _ in range(2):
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


def test_to_v_runs_once_per_distinct_context_of_a_call_and_to_q_never():
    unet = small_svd_unet()
    patch_unet_(unet, "exact")
    modules = [m for m in unet.modules() if isinstance(m, BroadcastCrossAttention)]
    rows = count_to_v_rows(unet)
    to_q_calls = []
    for module in modules:
        module.to_q.register_forward_hook(lambda m, i, o: to_q_calls.append(1))
    contexts = cond_uncond(seed=5)
    for step in range(3):  # every call computes its 2 distinct contexts (image, zero) once per module
        run(unet, inputs(contexts, seed=step))
    assert rows == [2] * 3 * len(modules)
    run(unet, inputs(contexts[:1], seed=9))  # batch halves after the cut: cond rows only, one vector
    assert rows[-len(modules):] == [1] * len(modules)
    assert not to_q_calls


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
    assert all(m.vectors_computed == 0 for m in patched.modules() if isinstance(m, BroadcastCrossAttention))


def test_in_place_weight_change_under_inference_mode_is_used_at_once():
    """ComfyUI's hook keyframes copy new weights into the same tensors under inference mode (same data_ptr, no
    version counter): the next call must use them."""
    unet = small_svd_unet()
    patched = copy.deepcopy(unet)
    patch_unet_(patched, "exact")
    args = inputs(cond_uncond())
    with torch.inference_mode():
        for model in (unet, patched):
            for p in model.parameters():
                p.data = p.data.clone()  # inference tensors, as ComfyUI's loaded weights are
        assert_close(patched(*args).sample, unet(*args).sample)
        for model in (unet, patched):
            for site in find_cross_attentions(model):
                site.module.to_v.weight.copy_(site.module.to_v.weight * 0.2)
        assert_close(patched(*args).sample, unet(*args).sample)


def test_patching_twice_is_idempotent_and_mode_can_change():
    unet = small_svd_unet()
    first = patch_unet_(unet, "exact")
    second = plan_patch(unet, "exact")
    assert not second.replacements and second.already_patched == len(first.replacements)
    assert second.parameters_unread == first.parameters_unread
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


@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_parameter_keys_stay_and_unread_parameters_are_reported(mode):
    unet = small_svd_unet()
    before = {k: v.shape for k, v in unet.state_dict().items()}
    plan = patch_unet_(unet, mode)
    assert {k: v.shape for k, v in unet.state_dict().items()} == before  # LoRA, merges and saving see the same model
    assert plan.parameters_unread == unread_parameter_count(unet) > 0
    assert parameter_count(unet) == sum(p.numel() for p in unet.parameters()) - plan.parameters_unread
    site = find_cross_attentions(unet)[0]
    assert site.module.heads == site.module.original.heads  # other attributes answer as the original's


def test_non_svd_unet_is_refused_with_its_name():
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), sample_size=8)
    with pytest.raises(ValueError, match="UNet2DConditionModel.*not an SVD UNet"):
        plan_patch(unet)
    with pytest.raises(ValueError, match="mode must be one of"):
        plan_patch(small_svd_unet(), "fast")


@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_saved_macs_are_the_unpatched_macs_less_the_patched(mode):
    """Each replacement's saved_macs after a call is exactly what FlopCounterMode counts for the unpatched UNet less
    the patched one on the same inputs (the run report's unpatched reference). The attention products run on the math
    backend, whose matmuls the counter sees (it does not count the CPU's fused attention kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vcut.cut.accounting import count_macs

    unet = small_svd_unet()
    args = inputs(cond_uncond())
    patched_unet = copy.deepcopy(unet)
    patch_unet_(patched_unet, mode)
    with sdpa_kernel(SDPBackend.MATH):
        unpatched = count_macs(lambda: run(unet, args)).all_matmuls
        patched = count_macs(lambda: run(patched_unet, args)).all_matmuls
    saved = sum(m.saved_macs for m in patched_unet.modules() if isinstance(m, (BroadcastCrossAttention,
                                                                                RemovedCrossAttention)))
    assert saved > 0 and unpatched - patched == saved, (unpatched, patched, saved)
