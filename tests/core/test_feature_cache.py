"""DeepCache for SVD (cache/deepcache.py): schedules, MAC accounting, and the partial step on diffusers' SVD UNet
(bench/diffusers_reference.py, the reference the MAC tables use)."""
import copy

import pytest
import torch
from svd_helpers import cond_uncond, inputs, run, small_svd_unet

from vcut.bench import diffusers_reference as ref
from vcut.bench.vcut_bench import build_unet, unet_inputs
from vcut.cache import deepcache as fc
from vcut.cut.accounting import count_macs


def test_uniform_schedule_runs_every_nth_step_fully():
    assert fc.full_steps(10, 3) == [1, 4, 7, 10]
    assert fc.full_steps(25, 1) == list(range(1, 26))
    assert fc.full_steps(6, 10) == [1]


def test_nonuniform_schedule_keeps_the_count_and_is_denser_around_the_center():
    for steps, interval in ((25, 2), (25, 3), (25, 5), (50, 5), (14, 3)):
        full = fc.full_steps(steps, interval, "non-uniform")
        assert len(full) == -(-steps // interval) and full[0] == 1 and len(set(full)) == len(full)
        assert all(1 <= s <= steps for s in full)
    full = fc.full_steps(50, 5, "non-uniform")  # the paper's setting: c = 15 of 50 steps
    gaps = [b - a for a, b in zip(full, full[1:], strict=False)]
    centre = min(range(len(gaps)), key=gaps.__getitem__)
    assert abs(full[centre] - 16) <= 4 and max(gaps) > 5 > min(gaps)
    assert full != fc.full_steps(50, 5)


def test_steps_outside_start_end_run_fully():
    assert fc.full_steps(10, 3, start_percent=0.2, end_percent=0.8) == [1, 2, 4, 7, 9, 10]
    assert fc.full_steps(10, 5, start_percent=0.5, end_percent=0.5) == list(range(1, 11))


@pytest.mark.parametrize("kwargs,message", [
    ({"interval": 0}, "interval must be a whole number >= 1"),
    ({"schedule": "cosine"}, "schedule must be one of"),
    ({"start_percent": 0.6, "end_percent": 0.4}, r"start_percent \(0.6\) must not be larger"),
])
def test_bad_schedules_are_refused(kwargs, message):
    args = {"interval": 3, "schedule": "uniform", "start_percent": 0.0, "end_percent": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        fc.full_steps(10, **args)
    with pytest.raises(ValueError, match=r"branch must be a skip branch of this UNet, 0..5"):
        fc.validate_branch(6, 6)


def test_full_step_layer_by_layer_equals_the_diffusers_unet_bit_for_bit():
    unet = small_svd_unet()
    args = inputs(cond_uncond())
    with torch.no_grad():
        for branch in range(ref.branch_count(unet)):
            assert torch.equal(ref.step(unet, *args, branch)[0], run(unet, args))


def test_partial_step_with_the_same_steps_feature_equals_the_full_step_bit_for_bit():
    unet = small_svd_unet()
    args = inputs(cond_uncond())
    assert ref.branch_count(unet) == 4  # conv_in, a layer, the downsample, a layer
    with torch.no_grad():
        for branch in range(ref.branch_count(unet)):
            full, feature = ref.step(unet, *args, branch)
            partial, _ = ref.step(unet, *args, branch, cached=feature)
            assert torch.equal(partial, full), branch
            other = inputs(cond_uncond(), seed=9)  # a later step: shallow layers see new input, deep ones are kept
            moved, _ = ref.step(unet, *other, branch, cached=feature)
            assert not torch.equal(moved, ref.step(unet, *other, branch)[0])


def test_partial_step_macs_on_meta_equal_a_real_run_and_shrink_with_the_branch():
    unet = small_svd_unet()
    meta = copy.deepcopy(unet).to("meta")
    args = inputs(cond_uncond())
    with torch.no_grad():
        feature = ref.step(unet, *args, 1)[1]
    meta_args = [a.to("meta") for a in args]
    with torch.device("meta"):
        counted = count_macs(lambda: ref.step(meta, *meta_args, 1, cached=feature.to("meta")))
        full = count_macs(lambda: meta(*meta_args))
        kept = [ref.step(meta, *meta_args, b)[1] for b in range(ref.branch_count(unet))]
        costs = [count_macs(lambda: ref.step(meta, *meta_args, b, cached=kept[b])).linear_conv for b in range(4)]
    real = count_macs(lambda: ref.step(unet, *args, 1, cached=feature))
    assert real.linear_conv == counted.linear_conv  # SDPA is not counted on the CPU, see test_cut_accounting
    assert costs == sorted(costs) and costs[-1] < full.linear_conv


def test_video_accounting_sums_the_steps():
    full_g, full_u, part_g, part_u = (fc.MacCount(v, v) for v in (8, 4, 2, 1))
    video = fc.cached_video_macs(full_g, full_u, part_g, part_u, 6, 4, fc.full_steps(6, 3))
    assert video.linear_conv == 8 + 2 + 2 + 4 + 1 + 1  # steps 1-3 guided (full, partial, partial), 4-6 not


def test_svd_xt_full_size_partial_step_cost():
    unet = build_unet()
    with torch.device("meta"):
        args = unet_inputs(1, 25, 576, 1024)
        full = count_macs(lambda: unet(*args))
        shapes = [ref.step(unet, *args, b)[1].shape for b in (0, 1)]
        partial = [count_macs(lambda: ref.step(unet, *args, b, cached=torch.empty(shapes[b]))) for b in (0, 1)]
    assert ref.branch_count(unet) == 12
    assert partial[0].linear_conv < partial[1].linear_conv < 0.25 * full.linear_conv
