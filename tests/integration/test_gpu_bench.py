"""The GPU benchmark (bench/gpu_bench.py) end to end on the CPU, shrunk, on the ComfyUI of COMFYUI_PATH (CI: 0.8.0 and
0.30.0, each in its own environment): ComfyUI started as its main.py starts it, SVD_img2vid through KSampler in all
eight variants, the mode switch and Video Extend through one PromptExecutor, and the codec part. Run as users run it, a
subprocess of ComfyUI's Python; checked through its JSON report (what a lent GPU's run returns). On a CPU ComfyUI
runs the plain ModelPatcher (dynamic VRAM is for NVIDIA GPUs only): the report says so, and every check still runs."""
import json
import subprocess
import sys

import harness

SCRIPT = harness.PACK_ROOT / "bench" / "gpu_bench.py"
FRAMES, STEPS, CUT = 2, 6, 3


def comfyui_version() -> str:
    text = (harness.comfy_path() / "comfyui_version.py").read_text()
    return text.split("__version__", 1)[1].split('"')[1]


def test_gpu_bench_runs_every_check_through_comfyui_and_the_codec_part(tmp_path):
    # reuse_threshold 1.0: with random weights and 6 steps EasyCache's default 0.2 skips nothing
    args = ["--out", str(tmp_path), "--comfy", str(harness.comfy_path()), "--device", "cpu", "--dtype", "fp32",
            "--threads", "1", "--size", "64x64", "--frames", str(FRAMES), "--steps", str(STEPS), "--cut-step",
            str(CUT), "--easycache-threshold", "1.0", "--model-channels", "64", "--repeats", "1",
            "--warmup-steps", "1", "--switch-steps", "1", "--extend-steps", "2",
            "--codec-size", "128x64", "--codec-frames", "3", "--codec-cpu-pairs", "1", "--codec-repeats", "1"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    comfy = report["comfyui"]
    assert comfy["version"] == comfyui_version()
    # on the CPU both releases run the plain ModelPatcher; the run says which and why
    assert comfy["patcher"] == "ModelPatcher"
    assert comfy["dynamic_vram"].startswith(("off: ComfyUI enables it on NVIDIA GPUs only", "not in this ComfyUI"))
    assert f"ModelPatcher (dynamic VRAM {comfy['dynamic_vram']})" in done.stdout
    assert report["skipped"] == []

    runs = report["sampling"]["runs"]
    assert list(runs) == ["baseline", "exact", "paper", "exact + cut", "paper + cut", "exact + cut + EasyCache",
                          "cache N=3", "exact + cut + cache N=3"]
    video = {name: entries[0] for name, entries in runs.items()}
    rows = {name: (e["unet_calls"], e["unet_rows"]) for name, e in video.items()}
    # guided calls carry cond + uncond (2 x FRAMES rows); from the cut on only cond (FRAMES rows)
    guided, unguided = CUT - 1, STEPS - CUT + 1
    assert rows["baseline"] == rows["exact"] == rows["paper"] == (STEPS, 2 * FRAMES * STEPS)
    cut_rows = (STEPS, FRAMES * (2 * guided + unguided))
    assert rows["exact + cut"] == rows["paper + cut"] == cut_rows
    # EasyCache must skip UNet evaluations beyond what the cut alone saves, and the ones it skips are after the cut
    easy_calls, easy_rows = rows["exact + cut + EasyCache"]
    assert easy_calls < cut_rows[0]
    assert cut_rows[1] - easy_rows == FRAMES * (cut_rows[0] - easy_calls)
    # UNet Feature Cache at interval 3: every step calls the UNet, only steps 1 and 4 run its deep blocks
    assert rows["cache N=3"] == rows["baseline"] and rows["exact + cut + cache N=3"] == cut_rows
    assert video["baseline"]["deep_calls"] == STEPS
    assert video["cache N=3"]["deep_calls"] == video["exact + cut + cache N=3"]["deep_calls"] == 2
    # attn2.to_q runs in every cross-attention of the baseline, never under VCUT
    assert video["baseline"]["to_q_calls"] > 0
    assert all(e["to_q_calls"] == 0 for name, e in video.items() if name not in ("baseline", "cache N=3"))
    assert all(report["sampling"]["finite"].values())
    differences = report["sampling"]["output_vs_baseline"]
    assert differences["exact"] < 1e-4 < differences["paper"]
    assert all(report["sampling"]["checks"].values()), report["sampling"]["checks"]

    switch = report["mode_switch"]
    assert [p["mode"] for p in switch["prompts"]] == ["baseline", "exact", "paper", "exact", "paper", "baseline"]
    assert all(p["live_as_mode"] for p in switch["prompts"])
    live = [p["live_attn2"] for p in switch["prompts"]]
    assert live[1] == live[3] == {"BroadcastCrossAttention": 32}
    assert live[2] == live[4] == {"BroadcastCrossAttention": 16, "RemovedCrossAttention": 16}
    assert [p.get("vs_first") for p in switch["prompts"][3:]] == [0.0, 0.0, 0.0]  # the CPU is deterministic
    assert switch["repatched_fully"]

    segments = report["video_extend"]["segments"]
    assert len(segments) == 3
    assert all(s["frames"] == FRAMES and s["seconds"] > 0 for s in segments)
    # 2 steps, both guided (cut at step 3): every segment evaluates the UNet once per step
    assert [s["unet_calls"] for s in segments] == [2, 2, 2]

    assert report["codec"]["same_vectors"] and report["codec"]["lossless"]
    table = (tmp_path / "gpu_bench.md").read_text()
    for heading in ("### Codec", "### Sampling", "### Mode switch", "### Video Extend"):
        assert heading in table
    assert "| exact + cut + EasyCache |" in table
