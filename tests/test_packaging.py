"""Packaging: the sdist and wheel that `python -m build` makes pass `twine check`, the wheel works in a fresh venv,
the metadata is complete, every declared dependency is used, and an untested transformers release fails loudly.

The build runs once per module (about half a minute), on a copy of the sources so the work tree gets no build files.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import tomllib

import cclm_hf
from cclm_hf.dependency_versions import ALLOW_UNTESTED_TRANSFORMERS, TESTED_TRANSFORMERS, check_transformers_version


ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# declared dependencies that no module imports, and why they are needed anyway
USED_WITHOUT_IMPORT = {
    "jinja2": "huggingface_hub's ModelCard.from_template renders the card template with it",
    "onnxscript": "torch.onnx's dynamo exporter imports it",
    "tensorboard": "Trainer's report_to=['tensorboard'] in examples/pretrain.py",
    "pytest": "runs the tests",
    "build": "tests/test_packaging.py builds the sdist and wheel",
    "twine": "tests/test_packaging.py checks them",
}
IMPORT_NAMES = {"pyyaml": "yaml", "pillow": "PIL", "huggingface-hub": "huggingface_hub", "faiss-cpu": "faiss"}


def _run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source)
    return out


def _one(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def test_sdist_and_wheel_pass_twine_check(dist):
    wheel, sdist = _one(dist, "*.whl"), _one(dist, "*.tar.gz")
    assert wheel.name == f"cclm_hf-{cclm_hf.__version__}-py3-none-any.whl"
    result = _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    assert result.stdout.count("PASSED") == 2


def test_wheel_metadata_and_files(dist):
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        info = f"cclm_hf-{cclm_hf.__version__}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {"cclm_hf/py.typed", "cclm_hf/templates/model_card.md", f"{info}/licenses/LICENSE"} <= names
    assert not any(name.startswith("tests/") for name in names)
    assert metadata["Version"] == cclm_hf.__version__ and metadata["License-Expression"] == "Apache-2.0"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert any(url.startswith("Paper, https://arxiv.org/abs/2206.00621") for url in metadata.get_all("Project-URL"))
    requirements = metadata.get_all("Requires-Dist")
    assert "transformers<5.30,>=5.24" in requirements
    assert not any(re.match(r"(timm|evaluate)\b", requirement) for requirement in requirements)
    assert {"onnx", "plots", "train", "demo", "dev"} <= set(metadata.get_all("Provides-Extra"))
    assert "cclm-hf = cclm_hf.cli:main" in entry_points


def test_wheel_in_a_fresh_venv_imports_registers_and_runs_the_cli(dist, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site_packages = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    # the dependencies (torch, transformers, ...) come from this environment, after the venv's own site-packages;
    # a plain path line, so this environment's editable install of cclm-hf is not picked up
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "dependencies.pth").write_text("\n".join(sorted(parents)) + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", _one(dist, "*.whl"))

    check = """
import json, cclm_hf
from importlib import resources
from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification
config = AutoConfig.for_model("cclm")
print(json.dumps({
    "file": cclm_hf.__file__,
    "version": cclm_hf.__version__,
    "model": AutoModel._model_mapping[type(config)].__name__,
    "retrieval": AutoModelForZeroShotImageClassification._model_mapping[type(config)].__name__,
    "template": resources.files("cclm_hf").joinpath("templates/model_card.md").is_file(),
    "typed": resources.files("cclm_hf").joinpath("py.typed").is_file(),
}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = _run(python, "-c", check, env=env, cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["file"].startswith(str(venv)), report
    assert report["version"] == cclm_hf.__version__
    assert (report["model"], report["retrieval"]) == ("CCLMModel", "CCLMForImageTextRetrieval")
    assert report["template"] and report["typed"]

    help_text = _run(venv / "bin" / "cclm-hf", "--help", env=env, cwd=tmp_path).stdout
    assert all(f"\n    {name} " in help_text for name in ("convert", "demo", "push", "card", "export"))


def test_version_is_written_once():
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cclm_hf.__version__"}
    sources = [path.read_text() for path in (ROOT / "src").rglob("*.py")]
    assert sum(len(re.findall(r'^__version__ = "', source, flags=re.MULTILINE)) for source in sources) == 1


def test_every_declared_dependency_is_used():
    imported = set()
    for folder in ("src", "examples", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    declared = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        declared += extra
    names = {re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() for requirement in declared}
    names.discard("cclm-hf")  # extras that include other extras
    unused = {name for name in names if IMPORT_NAMES.get(name, name.replace("-", "_")) not in imported} - set(
        USED_WITHOUT_IMPORT
    )
    assert not unused, f"declared but never imported: {sorted(unused)}"


def test_the_transformers_range_is_the_one_pyproject_declares():
    (requirement,) = [dep for dep in PYPROJECT["project"]["dependencies"] if dep.startswith("transformers")]
    assert requirement == f"transformers{TESTED_TRANSFORMERS}"


@pytest.mark.parametrize("version", ["5.24.0", "5.29.3", "5.25.0.dev0"])
def test_tested_transformers_versions_pass(version):
    check_transformers_version(version)


@pytest.mark.parametrize("version", ["5.23.1", "5.30.0", "5.30.0.dev0", "6.0.0", "4.57.1"])
def test_untested_transformers_versions_fail_loudly(version, monkeypatch):
    monkeypatch.delenv(ALLOW_UNTESTED_TRANSFORMERS, raising=False)
    with pytest.raises(ImportError, match=rf"tested with transformers>=5.24,<5.30, but transformers {version}"):
        check_transformers_version(version)
    monkeypatch.setenv(ALLOW_UNTESTED_TRANSFORMERS, "1")
    with pytest.warns(UserWarning, match="continuing because"):
        check_transformers_version(version)


def test_importing_cclm_hf_with_an_untested_transformers_fails():
    code = "import transformers; transformers.__version__ = '5.31.0'; import cclm_hf"
    env = {key: value for key, value in os.environ.items() if key != ALLOW_UNTESTED_TRANSFORMERS}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "ImportError: cclm-hf is tested with transformers>=5.24,<5.30, but transformers 5.31.0" in result.stderr
