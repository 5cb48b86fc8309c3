"""Boundary cases read from the schemas: every node of the pack, as the running ComfyUI exposes it (INPUT_TYPES: what
the executor validates prompts against and what the server's object_info lists), run through ComfyUI's own
PromptExecutor at each input's declared min, max and default (every COMBO option, both BOOLEAN values, a STRING's
default and the empty string) and with odd but legal IMAGE / MASK / LATENT tensors (1 frame, 1 x 1, 1 x N, N x 1,
sizes not divisible by 8 or 64, very wide and very tall, 4- and 1-channel images, NaN, inf, empty batches, SVD-sized).

Every case must end in a result or in an error whose message names the input. No RecursionError and no exception
raised inside torch, numpy, OpenCV or einops may reach the user: the executor's error is read as a user sees it, and
its exception type and the traceback's innermost frame must be a `raise` of the pack. After each case of a node that
takes a MODEL, the next prompt on the same executor (one tiny SVD loaded, as a server keeps it) must equal a fresh
executor's. Results must be finite where the inputs were.

Sampled, to keep a few minutes per release on 2 cores:
- widgets vary one at a time from the node's defaults; tensors vary one input at a time at the widgets' defaults
  (Join Video Segments: with colour_match 'overlap' and crossfade on, so the colour match sees them too; Video Loop
  Metrics: with and without a CLIP vision model);
- Join Video Segments' tensors go to segment_1 and segment_2 (segment_3..8 pass the same check);
- SVD-sized IMAGE batches (25 x 576 x 1024) only on nodes without a model or VAE; nodes with a model sample 2 steps of
  the tiny SVD and get SVD-XT's 25 frames at a small size instead, and SVD-sized masks (which are resized to the
  latent); Seamless Video Decode (SVD's full-width video VAE) gets small latents only.

The last test prints the table (node, input, value, outcome, seconds, MB: peak resident memory above the start of the
case); VCUT_BOUNDARY_TABLE=path also writes it as Markdown.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import re
import threading
import time
import uuid

import harness
import psutil
import pytest
import torch

LIBRARIES = ("torch", "numpy", "cv2", "einops", "scipy", "PIL", "av")
STEPS = 2
SVD_SIZE = (25, 576, 1024)
VALUES: dict[str, object] = {}
ROWS: list[dict] = []
_STATE: dict[str, object] = {}

# What a small valid graph around a node needs beyond its widgets' defaults and the generic links by type.
FRAMES = {("VCUTALSSLoopClip", "images"): 43,  # s(f-1)+1 at the defaults f=8, s=6
          ("VCUTMotionVectorDecode", "first_frame"): 1, ("VCUTVideoLoopMetrics", "image"): 1,
          ("VCUTFrameReplace", "anchor_image"): 1, ("VCUTFrameReplace", "anchor_latent"): 1}
CONNECT = {"VCUTJoinVideoSegments": ["segment_2"], "VCUTFrameReplace": ["positive"],
           "VCUTMotionVectorDecode": ["residual"], "VCUTSaveMotionVectors": ["residual"]}
WITH = {("VCUTFrameReplace", "anchor_image"): ["vae"]}  # inputs connected together with a tensor input
SAMPLED_OUT = {"VCUTJoinVideoSegments": [f"segment_{i}" for i in range(3, 9)]}
TENSOR_VARIANTS = {"VCUTJoinVideoSegments": [{"colour_match": "overlap", "crossfade": True}],
                   "VCUTVideoLoopMetrics": [{}, {"clip_vision": ["ckpt", 1]}]}
# A max that only runs with another input sized for it: (node, input, label, widgets, {tensor input: value factory})
JOINT = [("VCUTALSSLoopClip", "forward_frames", "max 1024 at stride 2 on 2047 frames (2x2)",
          {"forward_frames": 1024, "stride": 2}, {"images": lambda: _pixels(2047, 2, 2, 3)})]
SEAMLESS = "VCUTSeamlessVideoDecode"  # SVD's full-width video VAE: small latents only on the CPU


def pytest_generate_tests(metafunc):
    if "node_id" in metafunc.fixturenames:
        metafunc.parametrize("node_id", harness.pack_node_ids() if harness.comfy_path() else ["no ComfyUI"])


def value_source(io_type: str):
    """A test-only node that hands out VALUES[key] as `io_type` (tensors and models the cases build)."""
    class Value:
        FUNCTION = "get"
        RETURN_TYPES = (io_type,)
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"key": ("STRING", {"default": ""})}}

        def get(self, key):
            return (VALUES[key],)
    return Value


# ---- odd but legal tensors ----

def _pixels(*shape, seed=0):
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


def _with(t, value):
    t = t.clone()
    t.view(-1)[t.numel() // 2] = value
    return t


def odd_images(n: int, base: torch.Tensor, svd_sized: bool) -> dict[str, torch.Tensor]:
    cases = {"1 frame": base[:1], "1x1": _pixels(n, 1, 1, 3), "1x1000 (1 x N)": _pixels(n, 1, 1000, 3),
             "1000x1 (N x 1)": _pixels(n, 1000, 1, 3), "37x53 (not /8)": _pixels(n, 37, 53, 3),
             "40x72 (/8, not /64)": _pixels(n, 40, 72, 3), "16x2048 (very wide)": _pixels(n, 16, 2048, 3),
             "2048x16 (very tall)": _pixels(n, 2048, 16, 3), "4 channels (RGBA)": _pixels(n, 64, 64, 4),
             "1 channel (grey)": _pixels(n, 64, 64, 1), "NaN": _with(base, float("nan")),
             "inf": _with(base, float("inf")), "empty batch": base[:0]}
    if svd_sized:
        cases["SVD-sized 25x576x1024"] = _pixels(*SVD_SIZE, 3)
    return cases


def odd_masks(frames: int) -> dict[str, torch.Tensor]:
    base = _pixels(1, 64, 64)
    return {"1x1": _pixels(1, 1, 1) + 0.5, "1x1000 (1 x N)": _pixels(1, 1, 1000),
            "1000x1 (N x 1)": _pixels(1, 1000, 1), "37x53 (not /8)": _pixels(1, 37, 53),
            "16x2048 (very wide)": _pixels(1, 16, 2048), "2048x16 (very tall)": _pixels(1, 2048, 16),
            "[H, W] (no batch)": base[0], f"{frames} masks (one per frame)": _pixels(frames, 64, 64),
            "all zeros": torch.zeros(1, 64, 64), "NaN": _with(base, float("nan")), "inf": _with(base, float("inf")),
            "empty batch": base[:0], "SVD-sized 25x576x1024": _pixels(*SVD_SIZE)}


def odd_latents(n: int, seamless: bool) -> dict[str, dict]:
    g = torch.Generator().manual_seed(1)

    def z(*shape):
        return {"samples": torch.randn(shape, generator=g)}
    base = z(n, 4, 8, 8)["samples"]
    cases = {"1 frame": z(1, 4, 8, 8), "1x1": z(n, 4, 1, 1), "1x125 (1 x N)": z(n, 4, 1, 125),
             "125x1 (N x 1)": z(n, 4, 125, 1), "5x7 (40x56 px, not /64)": z(n, 4, 5, 7),
             "2x256 (very wide)": z(n, 4, 2, 256), "256x2 (very tall)": z(n, 4, 256, 2),
             "0 x 8 (no rows)": z(n, 4, 0, 8), "1 channel": z(n, 1, 8, 8),
             "16 channels (another model's)": z(n, 16, 8, 8), "NaN": {"samples": _with(base, float("nan"))},
             "inf": {"samples": _with(base, float("inf"))}, "empty batch": {"samples": base[:0]},
             "25 frames (SVD-XT), 8x8": z(25, 4, 8, 8)}
    if seamless:  # SVD's full-width video VAE: pixel sizes kept small on the CPU
        cases.update({"1x125 (1 x N)": z(n, 4, 1, 40), "125x1 (N x 1)": z(n, 4, 40, 1),
                      "2x256 (very wide)": z(n, 4, 1, 64), "256x2 (very tall)": z(n, 4, 64, 1),
                      "5x7 (40x56 px, not /64)": z(n, 4, 3, 5)})
        cases["25 frames (SVD-XT), 8x8"] = z(25, 4, 2, 2)
        del cases["1 frame"]
        cases["1 frame, 4x4"] = z(1, 4, 4, 4)
    return cases


# ---- graphs ----

def schema(node_id: str) -> dict:
    """The node's inputs as ComfyUI exposes them: {name: (section, type, options)}; a COMBO's type is "COMBO"."""
    nodes = harness.init_comfy()
    spec = nodes.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    inputs = {}
    for section in ("required", "optional"):
        for name, entry in (spec.get(section) or {}).items():
            kind, options = entry[0], (entry[1] if len(entry) > 1 else {}) or {}
            if isinstance(kind, list):
                kind, options = "COMBO", {**options, "options": kind}
            inputs[name] = (section, kind, options)
    return inputs


def widget_cases(inputs: dict) -> list[tuple[str, str, object]]:
    """(input, label, value): each number's default, min and max; each COMBO option; both BOOLEANs; STRING default and
    empty."""
    cases = []
    for name, (_, kind, opts) in inputs.items():
        if kind in ("INT", "FLOAT"):
            seen = []
            for label in ("default", "min", "max"):
                if label in opts and opts[label] not in seen:
                    seen.append(opts[label])
                    cases.append((name, f"{label} {opts[label]}", opts[label]))
        elif kind == "COMBO":
            cases += [(name, repr(option), option) for option in opts.get("options", [])]
        elif kind == "BOOLEAN":
            cases += [(name, str(value), value) for value in (True, False)]
        elif kind == "STRING":
            cases += [(name, repr(value), value) for value in dict.fromkeys([opts.get("default", ""), ""])]
    return cases


def widget_default(kind: str, opts: dict):
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        return opts["options"][0]
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False, "STRING": ""}[kind]


def base_images(n: int) -> torch.Tensor:
    key = f"real frames {n}"
    if key not in VALUES:
        VALUES[key] = harness.real_frames(n)
    return VALUES[key]


def tensor_link(node_id: str, name: str, kind: str) -> list:
    """A link to the base (valid) tensor of a tensor input."""
    if kind == "IMAGE":
        key = f"real frames {FRAMES.get((node_id, name), 5)}"
        base_images(FRAMES.get((node_id, name), 5))
    elif kind == "MASK":
        key = "mask 64x64"
        VALUES.setdefault(key, _pixels(1, 64, 64))
    elif node_id == SEAMLESS:
        key = "latent 3x4x4x4"
        VALUES.setdefault(key, {"samples": torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(2))})
    else:
        return ["src", 3]
    return ["v_" + kind, key]


def graph(node_id: str, inputs: dict, widgets: dict, tensors: dict) -> dict:
    """A prompt: the node with `widgets` and `tensors` (name -> VALUES key) over its defaults, its other inputs linked
    to sources by type, every output captured; a MODEL output is sampled (KSampler, STEPS steps) and captured."""
    prompt = {"src": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": 3, "seed": 0}},
              "ckpt": {"class_type": "VCUTTestCheckpoint", "inputs": {"ckpt_name": ""}}}
    node = {}
    wanted = set(CONNECT.get(node_id, [])) | set(tensors)
    for name in tensors:
        wanted |= set(WITH.get((node_id, name), []))
    for name, (section, kind, opts) in inputs.items():
        if name in widgets:
            node[name] = widgets[name]
        elif name in tensors:
            node[name] = [f"v_{kind}_{name}", 0]
            prompt[f"v_{kind}_{name}"] = {"class_type": f"VCUTTestValue{kind}", "inputs": {"key": tensors[name]}}
        elif kind in ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"):
            node[name] = widget_default(kind, opts)
        elif section == "optional" and name not in wanted:
            continue
        elif kind == "MODEL":
            node[name] = ["src", 0]
        elif kind == "CONDITIONING":
            node[name] = ["src", 2 if name == "negative" else 1]
        elif kind == "VAE":
            node[name] = ["svd_vae", 0] if node_id == SEAMLESS else ["ckpt", 2]
            prompt["svd_vae"] = {"class_type": "VCUTTestValueVAE", "inputs": {"key": "svd video vae"}}
        elif kind == "CLIP_VISION":
            node[name] = ["ckpt", 1]
        elif kind == "MOTION_VECTORS" or name == "residual":
            node[name] = ["enc", 0 if kind == "MOTION_VECTORS" else 1]
            prompt["enc"] = {"class_type": "VCUTMotionVectorEncode", "inputs": {
                "images": ["v_IMAGE_enc", 0], "method": "fast search", "block_size": "16", "search_range": 16}}
            prompt["v_IMAGE_enc"] = {"class_type": "VCUTTestValueIMAGE", "inputs": {"key": "real frames 3"}}
            base_images(3)
        else:
            source, key = tensor_link(node_id, name, kind)
            if isinstance(key, int):
                node[name] = [source, key]
            else:
                node[name] = [f"{source}_{name}", 0]
                prompt[f"{source}_{name}"] = {"class_type": f"VCUTTestValue{kind}", "inputs": {"key": key}}
    prompt["node"] = {"class_type": node_id, "inputs": node}
    nodes = harness.init_comfy()
    returns = list(getattr(nodes.NODE_CLASS_MAPPINGS[node_id], "RETURN_TYPES", ()))
    for slot in range(len(returns)):
        prompt[f"cap{slot}"] = {"class_type": "VCUTTestCapture", "inputs": {"value": ["node", slot], "key": f"{slot}"}}
    if "MODEL" in returns:
        conds = [i for i, kind in enumerate(returns) if kind == "CONDITIONING"]
        latent = ["node", returns.index("LATENT")] if "LATENT" in returns else ["src", 3]
        positive, negative = (["node", conds[0]], ["node", conds[1]]) if len(conds) == 2 else (["src", 1], ["src", 2])
        prompt["ks"] = harness.ksampler_node(["node", returns.index("MODEL")], positive, negative, latent, STEPS)
        prompt["cap_ks"] = {"class_type": "VCUTTestCapture", "inputs": {"value": ["ks", 0], "key": "sampled"}}
    return prompt


def reference_prompt() -> dict:
    return {"src": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": 3, "seed": 0}},
            "ref": harness.ksampler_node(["src", 0], ["src", 1], ["src", 2], ["src", 3], STEPS),
            "ref_cap": {"class_type": "VCUTTestCapture", "inputs": {"value": ["ref", 0], "key": "reference"}}}


# ---- running a case ----

class PeakMemory:
    """Peak resident memory of this process above its level at the start, sampled every 5 ms (MB)."""

    def __enter__(self):
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.mb = (self.peak - self.start) / 2**20


def execute(executor, prompt: dict) -> tuple[dict | None, dict | None]:
    """(captured outputs, None) or (None, the error as the executor reports it to the user)."""
    import execution
    harness.CAPTURED.clear()
    valid = asyncio.run(execution.validate_prompt(str(uuid.uuid4()), prompt, None))
    if not valid[0]:
        return None, {"validation": True, "exception_message": f"{valid[1]} {valid[3]}", "node_type": "validation",
                      "exception_type": "validation", "traceback": []}
    executor.execute(prompt, str(uuid.uuid4()), {}, valid[2])
    if executor.success:
        return dict(harness.CAPTURED), None
    return None, [data for event, data in executor.status_messages if event == "execution_error"][0]


def innermost(traceback_lines: list[str]) -> tuple[str, str]:
    """(file, code line) of the traceback's innermost frame."""
    found = re.match(r'\s*File "([^"]+)", line \d+, in [^\n]*\n\s*([^\n]*)', traceback_lines[-1] if traceback_lines
                     else "")
    return (found.group(1), found.group(2)) if found else ("", "")


def outcome(outputs: dict | None, error: dict | None, name: str, finite_inputs: bool) -> tuple[str, str]:
    """(outcome, detail): result | named error | refused at validation | unnamed error | crash | non-finite result."""
    if error is None:
        tensors = [v for v in _tensors(outputs)]
        if finite_inputs and not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
            return "non-finite result", "NaN/inf in an output"
        return "result", ""
    message = str(error.get("exception_message", "")).strip()
    named = re.search(rf"\b{re.escape(name)}\b", message) is not None  # a word: not 'latent' in 'anchor_latent'
    if error.get("validation"):
        return ("refused at validation" if named else "unnamed error"), message[:160]
    kind = str(error.get("exception_type", ""))
    file, code = innermost(error.get("traceback") or [])
    in_pack = pathlib.Path(file).resolve().is_relative_to(harness.PACK_ROOT) if file else False
    where = f"{kind} in {error.get('node_type')} at {pathlib.Path(file).name or '?'}: {code[:60]}"
    if kind == "RecursionError" or kind.split(".")[0] in LIBRARIES or not (in_pack and code.startswith("raise")):
        return "crash", f"{where}: {message[:160]}"
    return ("named error" if named else "unnamed error"), message[:160]


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _finite(value) -> bool:
    return all(torch.isfinite(t).all() for t in _tensors(value) if t.is_floating_point())


@pytest.fixture(scope="module")
def session(comfy_nodes, tmp_path_factory):
    """One PromptExecutor (as a server keeps it) and the reference latent of a fresh executor. Torch runs on one
    thread here: on a 2-core machine shared with other jobs, two threads that wait for each other made every small
    op of the tiny models take ~10 ms (a case 20x slower); the figures in the table are single-threaded."""
    from svd_vae import svd_video_vae
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for kind in ("IMAGE", "MASK", "LATENT", "VAE"):
        comfy_nodes.NODE_CLASS_MAPPINGS[f"VCUTTestValue{kind}"] = value_source(kind)
    VALUES["svd video vae"] = svd_video_vae(seed=0)
    folders = {name: tmp_path_factory.mktemp(name) for name in ("input", "output", "temp")}
    with harness.comfy_folders(folders["input"], folders["output"], folders["temp"]):
        reference = harness.fresh_session_run(reference_prompt())["reference"]["samples"]
        _STATE["executor"] = harness._new_executor("CLASSIC")
        _STATE["reference"] = reference
        _STATE["input"] = folders["input"]
        yield _STATE
    torch.set_num_threads(threads)
    VALUES.clear()


def model_still_usable() -> bool:
    """The reference prompt, run next on the session's executor, equals a fresh executor's (and really ran)."""
    executor = _STATE["executor"]
    outputs, error = execute(executor, reference_prompt())
    cached = {n for event, data in executor.status_messages if event == "execution_cached" for n in data["nodes"]}
    assert "ref" not in cached
    return error is None and torch.equal(outputs["reference"]["samples"], _STATE["reference"])


def prepare_motion_file(input_dir: pathlib.Path) -> None:
    """A motion-vector file in the input folder (Save Motion Vectors' own output), for Load Motion Vectors."""
    import folder_paths
    outputs, error = execute(_STATE["executor"], graph("VCUTSaveMotionVectors", schema("VCUTSaveMotionVectors"),
                                                       {"filename_prefix": "boundary"}, {}))
    assert error is None, error
    written = sorted(pathlib.Path(folder_paths.get_output_directory()).glob("boundary_*.safetensors"))
    (input_dir / "boundary.safetensors").write_bytes(written[-1].read_bytes())


def node_cases(node_id: str, inputs: dict) -> list[tuple[str, str, dict, dict]]:
    """(input, label, widgets, tensors) for every case of the node; tensors map input -> VALUES key."""
    cases = [(name, label, {name: value}, {}) for name, label, value in widget_cases(inputs)]
    has_model = any(kind in ("MODEL", "VAE") for _, kind, _ in inputs.values())
    for name, (_, kind, _) in inputs.items():
        if name in SAMPLED_OUT.get(node_id, []) or kind not in ("IMAGE", "MASK", "LATENT"):
            continue
        n = FRAMES.get((node_id, name), 5 if kind == "IMAGE" else 3)
        if kind == "IMAGE":
            odd = odd_images(n, base_images(n), svd_sized=not has_model)
        elif kind == "MASK":
            odd = odd_masks(n)
        else:
            odd = odd_latents(n, node_id == SEAMLESS)
        for index, variant in enumerate(TENSOR_VARIANTS.get(node_id, [{}])):
            suffix = "".join(f", {k}={v if not isinstance(v, list) else 'connected'}" for k, v in variant.items())
            for label, value in odd.items():
                if index and label.startswith("SVD-sized"):  # once per input is enough
                    continue
                key = f"{node_id}/{name}/{label}"
                VALUES[key] = value
                cases.append((name, label + suffix, dict(variant), {name: key}))
    for node, name, label, widgets, tensors in JOINT:
        if node == node_id:
            keys = {}
            for tensor_name, make in tensors.items():
                keys[tensor_name] = f"{node_id}/{tensor_name}/{label}"
                VALUES[keys[tensor_name]] = make()
            cases.append((name, label, widgets, keys))
    return cases


def test_boundaries(session, node_id):
    inputs = schema(node_id)
    if node_id == "VCUTLoadMotionVectors":
        prepare_motion_file(session["input"])
        inputs = schema(node_id)  # its file list, read again as the frontend would after a refresh
    has_model = any(kind == "MODEL" for _, kind, _ in inputs.values())
    failures = []
    for name, label, widgets, tensors in node_cases(node_id, inputs):
        prompt = graph(node_id, inputs, {k: v for k, v in widgets.items() if k in inputs}, tensors)
        finite = all(_finite(VALUES[key]) for key in tensors.values())
        with PeakMemory() as memory:
            start = time.perf_counter()
            outputs, error = execute(session["executor"], prompt)
            seconds = time.perf_counter() - start
        result, detail = outcome(outputs, error, name, finite)
        usable = model_still_usable() if has_model else None
        row = {"node": node_id, "input": name, "value": label, "outcome": result, "seconds": seconds,
               "mb": memory.mb, "detail": detail, "model ok": usable}
        ROWS.append(row)
        if result not in ("result", "named error", "refused at validation") or usable is False:
            failures.append(row)
    print("\n".join(format_row(r) for r in ROWS if r["node"] == node_id))
    assert not failures, "\n".join(format_row(r) for r in failures)


def format_row(r: dict) -> str:
    model = "" if r["model ok"] is None else (" model ok" if r["model ok"] else " MODEL CHANGED")
    return (f"{r['node']:<26} {r['input']:<18} {r['value']:<44} {r['outcome']:<20} {r['seconds']:7.2f} s "
            f"{r['mb']:8.1f} MB{model}  {r['detail']}")


def test_boundary_table(session):
    """The whole table, printed (and written as Markdown to VCUT_BOUNDARY_TABLE when set), with its summary."""
    assert ROWS, "no boundary case ran"
    counts = {}
    for r in ROWS:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    summary = (f"{len(ROWS)} cases on {len({r['node'] for r in ROWS})} nodes: "
               + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
               + f"; {sum(r['seconds'] for r in ROWS):.0f} s in the nodes, peak {max(r['mb'] for r in ROWS):.0f} MB")
    print("\n" + "\n".join(format_row(r) for r in ROWS) + "\n" + summary)
    target = os.environ.get("VCUT_BOUNDARY_TABLE")
    if target:
        lines = ["| node | input | value | outcome | s | MB |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['node']} | {r['input']} | {r['value']} | {r['outcome']} | {r['seconds']:.2f} | "
                  f"{r['mb']:.0f} |" for r in ROWS]
        pathlib.Path(target).write_text("\n".join(lines + ["", summary, ""]))
    assert set(counts) <= {"result", "named error", "refused at validation"}, summary
