"""`pip install -r requirements.txt` inside a ComfyUI environment: no torch, nothing that conflicts with ComfyUI's own
requirements.txt. Checked on paper (packaging specifiers against ComfyUI's pins and the versions its venv holds) and
for real (pip's dry-run resolver with ComfyUI's Python, which is sys.executable in this tier)."""
import json
import pathlib
import subprocess
import sys
from importlib.metadata import version

import harness
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

OURS = pathlib.Path(__file__).resolve().parents[2] / "requirements.txt"
TORCH_FAMILY = {"torch", "torchvision", "torchaudio"}


def read_requirements(path: pathlib.Path) -> dict[str, Requirement]:
    """name -> Requirement for each requirement line (comments, blank lines and pip options skipped)."""
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


@pytest.fixture(scope="module")
def comfy_reqs():
    return read_requirements(harness.comfy_path() / "requirements.txt")


@pytest.fixture(scope="module")
def our_reqs():
    return read_requirements(OURS)


def pip_dry_run(*extra, files=(OURS,)):
    """pip's resolver on requirement files with ComfyUI's Python; returns {name: version} it would install."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--disable-pip-version-check", "--report", "-",
           "--quiet", *extra]
    for path in files:
        cmd += ["-r", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}


def test_no_torch_family_in_our_requirements(our_reqs):
    assert not set(our_reqs) & TORCH_FAMILY
    assert "opencv-python" not in our_reqs  # headless: no Qt/GUI libraries in a server process (see README)


def test_shared_requirements_are_compatible_with_comfyui_pins(comfy_reqs, our_reqs):
    shared = set(our_reqs) & set(comfy_reqs)
    assert {"numpy", "av", "pillow"} <= shared  # the overlap we expect with ComfyUI 0.8.0's list
    for name in shared:
        ours, theirs = our_reqs[name].specifier, comfy_reqs[name].specifier
        # the version ComfyUI's venv holds satisfies both, so pip has nothing to change for this package
        installed = version(name)
        assert installed in theirs and ours.contains(installed, prereleases=True), (name, installed, ours, theirs)
        # an exact ComfyUI pin must be allowed by ours; our lower bounds must not exceed ComfyUI's
        for spec in theirs:
            if spec.operator == "==":
                assert spec.version in ours, (name, ours, theirs)
        ours_min = [Version(s.version) for s in ours if s.operator == ">="]
        theirs_min = [Version(s.version) for s in theirs if s.operator == ">="]
        if ours_min and theirs_min:
            assert max(ours_min) <= max(theirs_min), (name, ours, theirs)


def test_our_requirements_change_no_version_of_a_fresh_comfyui_install():
    """pip resolves a fresh ComfyUI venv (installed packages ignored) with and without our requirements.txt: every
    package ComfyUI's install gets keeps its version; ours only adds packages, none of them torch."""
    comfy_requirements = harness.comfy_path() / "requirements.txt"
    alone = pip_dry_run("--ignore-installed", files=(comfy_requirements,))
    together = pip_dry_run("--ignore-installed", files=(comfy_requirements, OURS))
    added = {name: together[name] for name in set(together) - set(alone)}
    print("our requirements add to a fresh ComfyUI install:", added)
    assert {name: (ver, together.get(name)) for name, ver in alone.items() if together.get(name) != ver} == {}
    assert "opencv-python-headless" in added and not set(added) & TORCH_FAMILY


def test_pip_dry_run_from_scratch_lands_on_versions_comfyui_accepts(comfy_reqs):
    """As in a fresh venv (installed packages ignored): every package pip picks that ComfyUI also lists gets a
    version ComfyUI's specifier accepts, and no torch comes along."""
    resolved = pip_dry_run("--ignore-installed")
    print("pip install --dry-run --ignore-installed -r requirements.txt resolves:", resolved)
    assert not set(resolved) & TORCH_FAMILY
    assert "opencv-python-headless" in resolved
    for name, ver in resolved.items():
        if name in comfy_reqs:
            assert comfy_reqs[name].specifier.contains(ver, prereleases=True), (name, ver, comfy_reqs[name])
