"""Headless runner throughput: items per minute of one folder batch in process vs on ComfyUI servers (one, two).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-venv/bin/python bench/runner_bench.py [--items 8] [--svd-items 4]

Two workflows, each over a folder of real inputs from shared/data:
- motion: workflows/codec_motion_save.json (Load Video -> Motion Vector Encode -> Save Motion Vectors + preview) on
  short 96x128 crops of car-detection.mp4 (no model);
- svd: workflows/svd_vcut_img2vid.json with the integration tier's tiny random-weight SVD (VCUTTestCheckpoint, from
  tests/integration/server_nodes), 32x32, 3 frames, 2 steps, on copies of a shared photo.
Each mode runs run_workflow.py --batch-input as a user would; items/min is the runner's own summary figure: the items
over the batch's wall-clock, ComfyUI's start-up (in process) and the servers' start-up left out, and the servers'
models loaded on their first item as the in-process run loads them on its first. The servers are real ComfyUI
processes on 127.0.0.1 (tests/integration/comfy_servers.py), stopped at the end.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "bench")]
from pack_import import register_pack  # noqa: E402  (after the sys.path / package setup above)

register_pack()
import harness  # noqa: E402  (after the sys.path / package setup above)
from comfy_servers import comfy_base, comfy_servers  # noqa: E402  (after the sys.path / package setup above)


def items_per_minute(stderr: str) -> float:
    found = re.findall(r"items: .* in ([\d.]+) s, ([\d.]+) items/min", stderr)
    if not found:
        raise RuntimeError(f"no summary line in the runner's output:\n{stderr[-3000:]}")
    return float(found[-1][1])


def run_batch(workflow, batch_input, out, extra) -> float:
    command = [sys.executable, str(ROOT / "run_workflow.py"), str(workflow), "--batch-input", batch_input,
               "--output-dir", str(out), *map(str, extra)]
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"batch failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return items_per_minute(done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8, help="clips in the motion batch")
    parser.add_argument("--svd-items", type=int, default=4, help="photos in the tiny-SVD batch (0: skip)")
    args = parser.parse_args()
    harness.init_comfy()  # for workflow_prompt (the converter with ComfyUI's node definitions)
    with tempfile.TemporaryDirectory(prefix="vcut-runner-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        clips, photos = tmp / "clips", tmp / "photos"
        clips.mkdir()
        photos.mkdir()
        for i in range(args.items):
            harness.write_clip(clips / f"clip{i:02}.mp4", frames=8, height=96, width=128, start=60 + 20 * i)
        from PIL import Image
        photo = Image.open(harness.SHARED_DATA / "photos" / "astronaut.png").convert("RGB").resize((64, 64))
        for i in range(args.svd_items):
            photo.rotate(15 * i).save(photos / f"photo{i:02}.png")
        svd = harness.workflow_prompt(harness.load_workflow("svd_vcut_img2vid.json"), {
            "SVD_img2vid_Conditioning": {"width": 32, "height": 32, "video_frames": 3}, "KSampler": {"steps": 2}})
        (tmp / "svd.json").write_text(json.dumps(svd))
        jobs = [("motion", ROOT / "workflows" / "codec_motion_save.json", f"LoadVideo.file={clips}")]
        if args.svd_items:
            jobs.append(("svd", tmp / "svd.json", f"LoadImage.image={photos}"))
        base = comfy_base(tmp / "inprocess")
        results = {}
        for name, workflow, batch_input in jobs:
            results[(name, "in process")] = run_batch(workflow, batch_input, tmp / f"out-{name}-local", [
                "--comfyui", harness.comfy_path(), "--cpu", "--comfy-args", f"--base-directory {base}"])
        with comfy_servers(tmp / "servers", 2) as servers:
            for name, workflow, batch_input in jobs:
                for count in (1, 2):
                    extra = [a for s in servers[:count] for a in ("--server", s.url)]
                    results[(name, f"{count} server{'s' * (count > 1)}")] = run_batch(
                        workflow, batch_input, tmp / f"out-{name}-{count}", extra)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| workflow | items | mode | items/min | vs in process |")
    print("|---|---:|---|---:|---:|")
    for (name, mode), rate in results.items():
        count = args.items if name == "motion" else args.svd_items
        print(f"| {name} | {count} | {mode} | {rate:.1f} | {rate / results[(name, 'in process')]:.2f}x |")


if __name__ == "__main__":
    main()
