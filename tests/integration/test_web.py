"""The web extension in headless Chromium against a real ComfyUI server on loopback (its real frontend).

Every check runs in three setups (one server each, module-scoped): the frontend ComfyUI's Python environment ships
(1.35.9 with ComfyUI 0.8.0), frontend 1.58.x on the LiteGraph canvas ("classic"), and 1.58.x with Nodes 2.0 (the
Vue node renderer, setting Comfy.VueNodes.Enabled, set through ComfyUI's settings API before the page loads).
1.58.x is PyPI's comfyui-frontend-package wheel, downloaded once with pip into ~/.cache/vcut/frontend/ and served
with `--front-end-root`.

Starts `main.py --cpu --listen 127.0.0.1 --port P --base-directory TMP` with TMP/custom_nodes/vcut -> this checkout
(so ComfyUI's own loader loads the pack and serves web/), then runs tests/web/web_test.mjs (playwright-core driving
/usr/bin/chromium): every workflow loads with no missing node, the pack's nodes carry the pack colour, the Cut Step
Scheduler's step bar shows the connected sampler's split (values against Python's cut rule, and the cells read back
from screenshot pixels), and a graph queued through /prompt shows the Salient Mask and Motion Vector Encode previews
on their nodes. Screenshots go to a temporary folder; with VCUT_UPDATE_SCREENSHOTS=1 they are also copied to
docs/screenshots/ (the bundled frontend's set, and the step bar in Nodes 2.0).
Needs: `apt-get install -y chromium` and `npm ci --prefix tests/web` (scripts/test.sh does both).
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import harness
import pytest

PACK_ROOT = harness.PACK_ROOT
WEB_TESTS = PACK_ROOT / "tests" / "web"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
SHARED_DATA = harness.TEST_DATA  # tests/data: real files in the repository
SCREENSHOTS = ("cut_step_scheduler.png", "salient_mask_preview.png", "motion_vector_preview.png",
               "workflow_vcut.png")
INPUT_IMAGE = "vcut_frames.png"
NEWEST_FRONTEND = "1.58.1"  # newest 1.58 patch on PyPI (comfyui-frontend-package), November 2026
FRONTEND_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "vcut" / "frontend"


def _bundled_frontend() -> str:
    try:
        return importlib.metadata.version("comfyui_frontend_package")
    except importlib.metadata.PackageNotFoundError:
        return "bundled"


# setup id -> (frontend version to download, or None for the one in ComfyUI's environment; Nodes 2.0 on;
#              docs/screenshots names to refresh from it: {name written by web_test.mjs: name in docs})
SETUPS = {
    f"frontend-{_bundled_frontend()}": (None, False, {name: name for name in SCREENSHOTS}),
    f"frontend-{NEWEST_FRONTEND}-classic": (NEWEST_FRONTEND, False, {}),
    f"frontend-{NEWEST_FRONTEND}-nodes2": (NEWEST_FRONTEND, True,
                                           {"cut_step_scheduler.png": "cut_step_scheduler_nodes2.png"}),
}


def frontend_static(version: str) -> pathlib.Path:
    """The static folder of PyPI's comfyui-frontend-package==version: downloaded with pip and unpacked once into
    ~/.cache/vcut/frontend/<version>/ ($XDG_CACHE_HOME/vcut/... when set), reused when present. The releases' test
    runs go side by side: one downloads while the other waits on the cache's lock (at most 20 minutes)."""
    FRONTEND_CACHE.mkdir(parents=True, exist_ok=True)
    with open(FRONTEND_CACHE / f"{version}.lock", "w") as lock:
        deadline = time.monotonic() + 1200
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run held {lock.name} for over 20 minutes")
                time.sleep(1)
        return _fetch_frontend(version)  # the lock goes with the file


def _fetch_frontend(version: str) -> pathlib.Path:
    target = FRONTEND_CACHE / version
    static = target / "comfyui_frontend_package" / "static"
    if (static / "index.html").is_file():
        return static
    wheels = FRONTEND_CACHE / f"{version}.download"
    shutil.rmtree(wheels, ignore_errors=True)
    try:
        try:
            result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                     "--disable-pip-version-check", f"comfyui-frontend-package=={version}",
                                     "-d", str(wheels)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"pip download comfyui-frontend-package=={version} took over 15 minutes: {error}")
        found = sorted(wheels.glob("comfyui_frontend_package-*.whl"))
        if result.returncode != 0 or not found:
            pytest.fail(f"could not download comfyui-frontend-package=={version} from PyPI (needed once, then cached "
                        f"in {target}); pip said:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        unpacking = FRONTEND_CACHE / f"{version}.unpacking"
        shutil.rmtree(unpacking, ignore_errors=True)
        with zipfile.ZipFile(found[0]) as wheel:
            wheel.extractall(unpacking, [m for m in wheel.namelist()
                                         if m.startswith("comfyui_frontend_package/static/")])
        if not (unpacking / "comfyui_frontend_package" / "static" / "index.html").is_file():
            pytest.fail(f"{found[0].name} has no comfyui_frontend_package/static/index.html")
        shutil.rmtree(target, ignore_errors=True)
        unpacking.rename(target)  # complete or absent: an interrupted unpack is redone next time
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    return static


def _schedule_module():
    """cut/schedule.py as the core tests import it (the pack as `vcut`, no ComfyUI), for the Python side of the cut
    rule."""
    return importlib.import_module("vcut.cut.schedule")


def _write_frames(path: pathlib.Path) -> None:
    """Three frames (4 apart) of a real clip (downscaled to 128x72) as one animated PNG: LoadImage loads every
    frame of a multi-frame image, so one input file gives Motion Vector Encode a moving batch."""
    from PIL import Image
    frames = [Image.fromarray(f).resize((128, 72), Image.BILINEAR)
              for f in harness.read_frames(SHARED_DATA / "video" / "vid_h264.mp4", 9, 20)[::4]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _post_json(url: str, value) -> None:
    request = urllib.request.Request(url, data=json.dumps(value).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, f"POST {url}: {response.status}"


@pytest.fixture(scope="module", params=list(SETUPS))
def web_setup(request):
    """(setup id, frontend version or None, Nodes 2.0 on, screenshots for docs)."""
    return (request.param, *SETUPS[request.param])


@pytest.fixture(scope="module")
def comfy_server(web_setup, tmp_path_factory):
    """A ComfyUI server with the pack and the setup's frontend, on a free loopback port; killed at teardown."""
    _, frontend_version, vue_nodes, _ = web_setup
    front_end_args = ["--front-end-root", str(frontend_static(frontend_version))] if frontend_version else []
    root = harness.comfy_path()
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "vcut").symlink_to(PACK_ROOT, target_is_directory=True)
    (base / "input").mkdir()
    _write_frames(base / "input" / INPUT_IMAGE)
    port = _free_port()
    log_path = base / "server.log"
    command = [sys.executable, str(root / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch",
               "--disable-api-nodes", *front_end_args]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=str(base), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a busy 2-core machine can take over 90 s
        while True:
            if server.poll() is not None:
                pytest.fail(f"ComfyUI exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                _get(url + "/system_stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not answer within 180 s:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.5)
        # the renderer, through ComfyUI's settings API (the default user's comfy.settings.json), before any page
        _post_json(url + "/settings/Comfy.VueNodes.Enabled", vue_nodes)
        yield url, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_server_serves_pack_and_extension(comfy_server):
    url, log_path = comfy_server
    info = json.loads(_get(url + "/object_info/VCUTCutStepScheduler", timeout=10))
    assert info["VCUTCutStepScheduler"]["category"] == "vcut/speed"
    extensions = json.loads(_get(url + "/extensions", timeout=10))
    assert "/extensions/vcut/js/vcut.js" in extensions, extensions
    assert b"registerExtension" in _get(url + "/extensions/vcut/js/vcut.js", timeout=10)


def test_server_offers_the_workflows_as_templates_with_thumbnails(comfy_server):
    """The frontend's template browser lists /workflow_templates and loads <name>.json and <name>.jpg from
    /api/workflow_templates/<pack folder>/."""
    url, _ = comfy_server
    names = sorted(p.stem for p in (PACK_ROOT / "workflows").glob("*.json"))
    assert names and sorted(json.loads(_get(url + "/workflow_templates", timeout=10))["vcut"]) == names
    for name in names:
        served = json.loads(_get(f"{url}/api/workflow_templates/vcut/{name}.json", timeout=10))
        assert served == json.loads((PACK_ROOT / "workflows" / f"{name}.json").read_text())
        thumbnail = _get(f"{url}/api/workflow_templates/vcut/{name}.jpg", timeout=10)
        assert thumbnail[:3] == b"\xff\xd8\xff" and len(thumbnail) < 80_000, f"{name}.jpg is not a small JPEG"


def test_web_extension_in_chromium(comfy_server, web_setup, tmp_path):
    url, log_path = comfy_server
    setup_id, frontend_version, vue_nodes, docs_screenshots = web_setup
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh tries it)"
    assert (WEB_TESTS / "node_modules" / "playwright-core").is_dir(), \
        "tests/web/node_modules is missing: npm ci --prefix tests/web (scripts/test.sh runs it)"
    node = shutil.which("node")
    assert node, "node (Node.js) is not on PATH: it runs tests/web/web_test.mjs"
    schedule = _schedule_module()
    cases = [(f, n) for n in (1, 4, 10, 14, 20, 25, 30, 50) for f in (0.01, 0.1, 0.125, 0.25, 0.3, 0.5, 0.64, 0.7,
                                                                     0.75, 0.9, 1.0)]
    fractions = [[f, n, schedule.cut_step_from_fraction(f, n)] for f, n in cases]
    out_dir = tmp_path / "web"
    # its own process group, so that a timeout also ends the Chromium that playwright started
    browser = subprocess.Popen(
        [node, str(WEB_TESTS / "web_test.mjs"), "--url", url, "--workflows", str(PACK_ROOT / "workflows"),
         "--out", str(out_dir), "--image", INPUT_IMAGE, "--fractions", json.dumps(fractions),
         "--renderer", "nodes2" if vue_nodes else "classic"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = browser.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        stdout, stderr = browser.communicate()
        pytest.fail(f"the browser checks did not finish within 240 s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result = subprocess.CompletedProcess(browser.args, browser.returncode, stdout, stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("VCUT_WEB_REPORT ")]
    assert result.returncode == 0 and lines, (
        f"browser checks failed (rc {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
        f"server log:\n{log_path.read_text()[-3000:]}")
    report = json.loads(lines[-1].split(" ", 1)[1])
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    assert report["frontendVersion"] == (frontend_version or _bundled_frontend()), report["frontendVersion"]
    assert report["vueNodes"] is vue_nodes, f"{setup_id}: Comfy.VueNodes.Enabled is {report['vueNodes']}"
    assert not [e for e in report["consoleErrors"] if "vcut" in e.lower()], report["consoleErrors"]
    assert not [u for u in report["failedRequests"] if "/extensions/vcut/" in u], report["failedRequests"]
    workflows = sorted(p.name for p in (PACK_ROOT / "workflows").glob("*.json"))
    assert sorted(report["workflows"]) == workflows
    # Video Extend's overlap output feeds the next Video Extend's and Join Video Segments' overlap widgets
    assert report["workflows"]["video_extend_3_segments.json"]["linkedWidgets"] == 2, report["workflows"]
    assert report["fractionCases"] == len(fractions)
    # the split, and the cells as drawn on screen: [guided cells, unguided cells] read from screenshot pixels
    assert [s["guided"] for s in report["stepBar"]] == [16, 16, 30, 0, 12, 16, 16, 16]
    assert [s["cells"] for s in report["stepBar"]] == [[16, 9], [16, 14], [30, 0], [0, 25], [12, 13], [16, 9],
                                                       [16, 9], [16, 9]]
    assert report["unconnected"]["cells"] == [16, 9], report["unconnected"]
    assert report["advanced"]["cells"] == [16, 4], report["advanced"]
    assert report["advanced"]["summary"].startswith("steps 1-16 guided (CFG), 17-20 cond only"), report["advanced"]
    assert report["sizeStable"], report["sizes"]
    # a workflow with 10^9 sampler steps: the page answered (web_test.mjs fails a call after 20 s), the split is
    # right and the bar is on screen as a guided and an unguided span; bad step values are named, not drawn
    huge = report["hugeSteps"]
    assert huge["steps1e9"]["split"]["steps"] == 10 ** 9 and huge["steps1e9"]["split"]["guided"] == 16, huge
    assert huge["cells"] == [1, 1], huge
    assert max(huge["rectsFor"].values()) <= huge["rectsFor"]["25"], huge["rectsFor"]  # 25 cells is the most here
    assert [b["value"] for b in report["badSteps"]] == ["-5", "abc", "Infinity"], report["badSteps"]
    timing = {key: {k: huge[key][k] for k in ("loadMs", "frameMs", "drawMs")} for key in ("steps1e9", "steps25")}
    print(f"\n{setup_id}: workflow load / two frames / bar draw in ms, 10^9 steps {timing['steps1e9']}, "
          f"25 steps {timing['steps25']}; bad steps " +
          ", ".join(f"{b['value']}: {b['split']['error'] or b['split']['summary']}" for b in report["badSteps"]))
    # the bar widget is neither saved in the workflow nor sent to the server
    assert report["saved"] == {"widgetsValues": 4, "promptInputs": ["after_cut", "auto_threshold", "cut_fraction",
                                                                     "cut_step", "model"]}, report["saved"]
    assert report["previews"]["salient_mask"]["outputs"] == 3
    assert report["previews"]["motion_vector"]["outputs"] == 2
    for name in SCREENSHOTS:
        shot = out_dir / name
        assert shot.is_file() and shot.stat().st_size > 0, f"screenshot {name} not written"
    if os.environ.get("VCUT_UPDATE_SCREENSHOTS") == "1":
        (PACK_ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        for name, docs_name in docs_screenshots.items():
            shutil.copyfile(out_dir / name, PACK_ROOT / "docs" / "screenshots" / docs_name)
