"""Registry packaging: pyproject.toml as comfy-cli reads it and `comfy node pack` producing an archive that holds exactly the pack (no tests, caches, venvs or outputs).
`comfy node validate` runs in scripts/test.sh itself, before the tests, so its output is in the test log."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib
from conftest import PACK_ROOT
from packaging.requirements import Requirement
from PIL import Image

ROOT = Path(PACK_ROOT)
COMFY = Path(sys.executable).with_name("comfy")  # comfy-cli from requirements-dev.txt, in the same venv
# Development-only paths that must not reach the registry archive (mirrors .comfyignore, written out independently;
# docs/make_*.py are the scripts that draw the pictures in docs/).
DEV_ONLY_DIRS = ("tests/", "bench/", "scripts/", ".ci/")
DEV_ONLY_FILES = {"requirements-dev.txt", "constraints.txt", ".gitignore", ".comfyignore"}
FORBIDDEN_PARTS = {".venv", "__pycache__", "node_modules", ".git", ".pytest_cache", "out", "test-output"}


def comfy_cli(*args, cwd):
    """Runs comfy-cli without the telemetry prompt (DO_NOT_TRACK; --skip-prompt) and returns the finished process."""
    env = dict(os.environ, DO_NOT_TRACK="1", COMFY_NO_TELEMETRY="1")
    return subprocess.run([str(COMFY), "--skip-prompt", "--no-json", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def tracked_files():
    """What git would track after the lead commits the tree: tracked plus untracked-but-not-ignored files that exist."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted({f for f in out.splitlines() if f and (ROOT / f).is_file()})


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_pyproject_has_registry_fields_and_comfy_cli_reads_them_all():
    from comfy_cli.registry.config_parser import extract_node_configuration

    data = pyproject()
    comfy = data["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert comfy["Icon"].endswith("/docs/icon.png") and comfy["Icon"].startswith("https://")
    assert data["project"]["urls"]["Repository"].startswith("https://github.com/")
    config = extract_node_configuration(str(ROOT / "pyproject.toml"))
    # comfy-cli drops a field it cannot parse (with a warning) instead of failing: each must come through
    assert config.project.name == "vcut" and config.project.version == "0.1.0"
    assert config.project.license.file == "LICENSE" and (ROOT / "LICENSE").is_file()
    assert config.project.supported_os == ["OS Independent"]
    assert config.project.supported_accelerators == ["GPU :: NVIDIA CUDA"]
    assert config.project.supported_comfyui_version == ">=0.8.0"
    assert config.tool_comfy.publisher_id == "vcut" and config.tool_comfy.icon == comfy["Icon"]


def test_icon_is_a_400px_square_png():
    with Image.open(ROOT / "docs" / "icon.png") as icon:
        assert icon.format == "PNG" and icon.size == (400, 400)


def test_dependencies_match_requirements_txt_and_exclude_torch():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = sorted(str(Requirement(ln)) for ln in lines if ln)
    assert reqs == sorted(str(Requirement(d)) for d in pyproject()["project"]["dependencies"])
    names = {Requirement(r).name.lower() for r in reqs}
    assert not names & {"torch", "torchvision", "torchaudio"}
    assert "opencv-python-headless" in names and "opencv-python" not in names


def test_comfy_node_pack_holds_exactly_the_pack(tmp_path):
    files = tracked_files()
    work = tmp_path / "vcut"
    for f in files:  # a clean copy: no .venv, caches or outputs can leak in, whatever lies around in the checkout
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, work / f)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    proc = comfy_cli("node", "pack", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(work / "node.zip") as z:
        packed = set(z.namelist())

    expected = {f for f in files if not f.startswith(DEV_ONLY_DIRS) and f not in DEV_ONLY_FILES
                and not (f.startswith("docs/make_") and f.endswith(".py"))}
    assert packed == expected, f"missing: {sorted(expected - packed)}; extra: {sorted(packed - expected)}"
    for required in ("__init__.py", "nodes/__init__.py", "pyproject.toml", "requirements.txt", "LICENSE",
                     "README.md", "docs/icon.png"):
        assert required in packed
    assert any(f.startswith("workflows/") and f.endswith(".json") for f in packed)
    assert any(f.startswith("web/") and f.endswith(".js") for f in packed)
    assert not any(set(Path(f).parts) & FORBIDDEN_PARTS or f.endswith(".pyc") for f in packed)


def test_workflows_folder_holds_only_workflows_with_their_thumbnails():
    """ComfyUI serves workflows/ as templates and the registry archive ships it: each .json with its .jpg, nothing
    else (no drafts, no stray files)."""
    names = [f.removeprefix("workflows/") for f in tracked_files() if f.startswith("workflows/")]
    stray = [n for n in names if "/" in n or Path(n).suffix not in (".json", ".jpg")]
    assert not stray, f"workflows/ holds files that are not a workflow or its thumbnail: {stray}"
    stems = {suffix: {Path(n).stem for n in names if n.endswith(suffix)} for suffix in (".json", ".jpg")}
    assert stems[".json"] == stems[".jpg"], (f"without a thumbnail: {sorted(stems['.json'] - stems['.jpg'])}; "
                                             f"thumbnail without a workflow: {sorted(stems['.jpg'] - stems['.json'])}")


def test_readme_documents_every_node_and_workflow():
    """The README: what it does and Install first, then the two commands in a short section of their own; a line per
    node (display name and node_id) and every workflow. docs/nodes.md: a section per node."""
    import re

    readme = (ROOT / "README.md").read_text()
    reference = (ROOT / "docs" / "nodes.md").read_text()
    assert readme.startswith("# ")
    commands = readme.index("## Demo and tests")
    assert readme.index("## Install") < commands
    section = readme[commands:readme.index("\n## ", commands + 1)]
    assert "bash scripts/demo.sh" in section and "bash scripts/test.sh" in section
    assert len(readme.splitlines()) <= 220, "the README is for ComfyUI users: the long reference lives in docs/"
    source = "\n".join(p.read_text() for p in sorted((ROOT / "nodes").glob("*.py")))
    nodes = re.findall(r'node_id="(VCUT\w+)",\s*display_name="([^"]+)"', source)
    assert sorted(n for n, _ in nodes) == sorted(re.findall(r'node_id="(VCUT\w+)"', source)), \
        "every node's display_name is a literal beside its node_id (docs/make_pictures.py reads them too)"
    assert len(nodes) >= 9
    for node_id, name in nodes:
        assert re.search(rf"^\| {re.escape(name)} \| `{node_id}` \| `vcut/\w+` \|", readme, re.M), (node_id, name)
        assert re.search(rf"^### {re.escape(name)} \(`vcut/\w+`, `{node_id}`\)$", reference, re.M), (node_id, name)
    for workflow in sorted((ROOT / "workflows").glob("*.json")):
        assert f"`{workflow.name}`" in readme, workflow.name


def test_relative_links_in_the_docs_lead_to_files():
    """README, BENCHMARKS and docs/*.md: every relative link names a file of the repository (anchors not checked)."""
    import re

    for page in [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to a missing {target}"