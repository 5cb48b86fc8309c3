"""The demo's wall-clock part (bench/vcut_wallclock.py): whole videos with the cut, and honest ratios."""
import torch
from svd_helpers import small_svd_unet

from vcut.bench.vcut_wallclock import ratio_cell, sample_video, variants, video_inputs


def test_sample_video_runs_cfg_rows_before_the_cut_and_one_row_after():
    unet = small_svd_unet()
    rows = []
    unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    out = sample_video(unet, video_inputs(2, 64, 64, context_dim=32), steps=5, cut_step=3)
    assert rows == [2, 2, 1, 1, 1]
    assert out.shape == (1, 2, 4, 8, 8) and torch.isfinite(out).all()


def test_exact_variant_gives_the_baseline_video_and_the_cut_changes_it():
    unet = small_svd_unet()
    runs = variants(unet, steps=4, cut_step=3)
    assert sorted(runs) == sorted(["baseline", "baseline + cut 3", "exact", "exact + cut 3", "paper",
                                   "paper + cut 3", "cache N=3", "exact + cut 3 + cache N=3"])
    inputs = video_inputs(2, 64, 64, context_dim=32)
    videos = {name: sample_video(model, inputs, 4, cut, interval) for name, (model, cut, interval) in runs.items()}
    base = videos["baseline"]
    assert (videos["exact"] - base).abs().max() <= 1e-4 * base.abs().max()
    assert (videos["exact + cut 3"] - videos["baseline + cut 3"]).abs().max() <= 1e-4 * base.abs().max()
    assert not torch.allclose(videos["baseline + cut 3"], base)
    for name in ("cache N=3", "exact + cut 3 + cache N=3"):
        assert torch.isfinite(videos[name]).all() and not torch.allclose(videos[name], base)


def test_cache_variant_runs_the_deep_blocks_on_full_steps_only_across_the_cut():
    """Interval 3 over 6 steps: full steps 1 and 4, partial 2, 3, 5, 6; the cut at 3 shrinks the batch to one row,
    and the partial steps after it use the kept feature's conditional row."""
    unet = small_svd_unet()
    mid, rows = [], []
    unet.mid_block.register_forward_pre_hook(lambda module, args, kwargs: mid.append(kwargs["hidden_states"].shape[0]),
                                             with_kwargs=True)
    unet.conv_in.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    out = sample_video(unet, video_inputs(2, 64, 64, context_dim=32), steps=6, cut_step=3, cache_interval=3)
    assert rows == [4, 4, 2, 2, 2, 2]  # rows x 2 frames
    assert mid == [4, 2]
    assert torch.isfinite(out).all()


def test_ratio_is_printed_only_when_the_repetitions_agree():
    assert ratio_cell([0.80, 0.85, 0.83]) == "0.830 (0.800-0.850)"
    assert ratio_cell([0.70, 0.95, 0.80]).startswith("spread too large for a conclusion")
    assert ratio_cell([0.97, 1.02, 0.99]).startswith("no difference measurable")
    assert "no conclusion" in ratio_cell([0.8])
