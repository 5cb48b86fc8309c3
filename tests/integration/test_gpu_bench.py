"""The GPU benchmark (bench/gpu_bench.py) end to end on the CPU, shrunk: ComfyUI's SVD_img2vid through KSampler in all
six variants, the node chain built by the nodes' own classes, and the codec part. Run as users run it, a subprocess
of ComfyUI's Python; checked through its JSON report (what a lent GPU's run returns)."""
import json
import subprocess
import sys

import harness

SCRIPT = harness.PACK_ROOT / "bench" / "gpu_bench.py"


def test_gpu_bench_runs_every_variant_through_comfyui_and_the_codec_part(tmp_path):
    args = ["--out", str(tmp_path), "--comfy", str(harness.comfy_path()), "--device", "cpu", "--dtype", "fp32",
            "--threads", "1", "--size", "64x64", "--frames", "2", "--steps", "3", "--cut-step", "2",
            "--model-channels", "64", "--repeats", "1", "--warmup-steps", "1",
            "--codec-size", "128x64", "--codec-frames", "3", "--codec-cpu-pairs", "1", "--codec-repeats", "1"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    runs = report["sampling"]["runs"]
    assert list(runs) == ["baseline", "exact", "paper", "exact + cut", "paper + cut", "exact + cut + EasyCache"]
    rows = {name: (entries[0]["unet_calls"], entries[0]["unet_rows"]) for name, entries in runs.items()}
    # 3 steps of 2 frames: guided calls carry cond + uncond (4 rows); from the cut (step 2) on only cond (2 rows)
    assert rows["baseline"] == rows["exact"] == rows["paper"] == (3, 12)
    assert rows["exact + cut"] == rows["paper + cut"] == (3, 8)
    assert rows["exact + cut + EasyCache"][1] <= 8
    assert all(report["sampling"]["finite"].values())
    differences = report["sampling"]["output_vs_baseline"]
    assert differences["exact"] < 1e-4 < differences["paper"]
    assert report["codec"]["same_vectors"] and report["codec"]["lossless"]
    table = (tmp_path / "gpu_bench.md").read_text()
    assert "| exact + cut + EasyCache |" in table and "### Codec" in table
