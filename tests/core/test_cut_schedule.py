"""The guidance cut schedule: step numbering on the sigma schedule, fractions, auto cut, delta reuse."""
import pytest
import torch

from vcut.cut.schedule import CutSchedule, StepCounter, cut_step_from_fraction, schedule_summary, validate_cut_step

SIGMAS = torch.tensor([14.6, 7.0, 3.1, 1.2, 0.4, 0.0])  # 5 steps


def test_first_order_sampler_calls_map_to_their_steps():
    counter = StepCounter(SIGMAS)
    assert [counter.step_of(float(s)) for s in SIGMAS[:-1]] == [1, 2, 3, 4, 5]


def test_heun_second_call_at_next_sigma_belongs_to_the_current_step():
    counter = StepCounter(SIGMAS, evaluates_step_end=True)
    steps = []
    for i in range(5):  # Heun: call at sigmas[i], then at sigmas[i+1] (not on the last step, sigma 0)
        steps.append(counter.step_of(float(SIGMAS[i])))
        if SIGMAS[i + 1] > 0:
            steps.append(counter.step_of(float(SIGMAS[i + 1])))
    assert steps == [1, 1, 2, 2, 3, 3, 4, 4, 5]


def test_intermediate_sigmas_of_second_order_samplers():
    counter = StepCounter(SIGMAS)
    midpoint = float((SIGMAS[1] * SIGMAS[2]).sqrt())  # dpm_2 evaluates between two schedule sigmas
    assert counter.step_of(midpoint) == 2
    assert counter.step_of(float(SIGMAS[2]) * (1 + 1e-6)) == 3  # float noise on a schedule sigma


def test_cut_step_validation_and_fractions():
    assert cut_step_from_fraction(0.64, 25) == 17
    assert cut_step_from_fraction(1.0, 25) == 26  # nothing cut
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="cut_fraction"):
            cut_step_from_fraction(bad, 25)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="cut_step"):
            validate_cut_step(bad)
    assert "nothing is cut" in schedule_summary(30, 25)
    assert "no guidance at all" in schedule_summary(1, 25)
    assert "steps 1-16 use guidance, steps 17-25 (9)" in schedule_summary(17, 25)


def test_cut_run_drop_and_reuse_delta():
    cond, uncond = torch.full((2, 2), 3.0), torch.full((2, 2), 1.0)
    drop = CutSchedule(cut_step=3).new_run()
    assert drop.is_guided(2) and not drop.is_guided(3)
    drop.observe(1, [cond, uncond], 0)
    assert [t.tolist() for t in drop.unguided_outputs(cond, 2, 0)] == [cond.tolist(), cond.tolist()]
    reuse = CutSchedule(cut_step=3, after_cut="reuse_delta").new_run()
    reuse.observe(2, [cond, uncond], 0)
    out_cond, out_uncond = reuse.unguided_outputs(cond + 1, 2, 0)
    assert torch.equal(out_cond - out_uncond, cond - uncond)  # CFG keeps applying the last delta
    assert (reuse.guided_calls, reuse.unguided_calls) == (1, 1)


def test_three_conditionings_positive_last_as_dual_cfg_passes_them():
    negative, middle, positive = torch.zeros(2), torch.ones(2), torch.full((2,), 4.0)
    drop = CutSchedule(cut_step=2).new_run()
    drop.observe(1, [negative, middle, positive], 2)
    assert all(torch.equal(t, positive + 1) for t in drop.unguided_outputs(positive + 1, 3, 2))
    reuse = CutSchedule(cut_step=2, after_cut="reuse_delta").new_run()
    reuse.observe(1, [negative, middle, positive], 2)
    out = reuse.unguided_outputs(positive + 1, 3, 2)
    assert torch.equal(out[2] - out[0], positive - negative) and torch.equal(out[2] - out[1], positive - middle)
    with pytest.raises(ValueError, match="after_cut"):
        CutSchedule(cut_step=3, after_cut="keep")


def test_auto_cut_when_guidance_delta_is_small():
    run = CutSchedule(cut_step=26, auto_threshold=0.05).new_run()
    cond = torch.ones(4)
    run.observe(1, [cond, cond * 0.5], 0)  # large delta: keep guiding (and step 1 is before auto_min_step anyway)
    run.observe(2, [cond, cond * 0.5], 0)
    assert run.cut_at == 26
    run.observe(3, [cond, cond * 0.99], 0)  # 1% relative delta < 5%: cut from step 4 on
    assert run.cut_at == 4 and not run.is_guided(4)
