"""Tests that the docs match the code: CLI options, links, conda environment and examples."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import ptychozarr
from ptychozarr import errors, plotting
from ptychozarr.cli import COMMANDS
from ptychozarr.cli import main as cli_main
from ptychozarr.cluster import make_jobqueue_cluster

REPOSITORY = Path(__file__).resolve().parents[1]
DOCS = REPOSITORY / "docs"

# pip name -> conda-forge names that provide it (only where they differ).
CONDA_NAMES = {"dask": {"dask", "distributed"}, "matplotlib": {"matplotlib-base"}}

_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _help_text(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_main([name, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _render_cli_reference() -> str:
    """Return what docs/make_cli_reference.py writes."""
    spec = importlib.util.spec_from_file_location("make_cli_reference",
                                                  DOCS / "make_cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.render())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_help_options_documented(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    help_text = _help_text(name, capsys)
    reference = (DOCS / "cli.md").read_text()
    section = reference.split(f"## `ptychozarr {name}`", 1)
    assert len(section) == 2, f"docs/cli.md has no section for {name!r}"
    body = section[1].split("\n## ", 1)[0]
    options = set(_OPTION.findall(help_text)) - {"-h", "--help"}
    missing = sorted(option for option in options if option not in body)
    assert not missing, f"options of {name!r} missing from docs/cli.md: {missing}"


def test_cli_reference_up_to_date() -> None:
    reference = (DOCS / "cli.md").read_text()
    written_with = re.search(r"with Python (\d+\.\d+)", reference)
    assert written_with is not None
    running = ".".join(str(part) for part in sys.version_info[:2])
    if written_with.group(1) != running:
        pytest.skip(f"docs/cli.md was written with Python {written_with.group(1)}, whose argparse "
                    f"formats help differently from Python {running}")
    assert reference == _render_cli_reference(), (
        "docs/cli.md is out of date: run python docs/make_cli_reference.py > docs/cli.md")


def test_cli_help_states_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    without_default = []
    for name in sorted(COMMANDS):
        help_text = _help_text(name, capsys)
        if "default" not in help_text:
            without_default.append(name)
    assert not without_default, f"commands whose --help names no default: {without_default}"


def test_docs_links_resolve() -> None:
    broken = []
    for page in [*sorted(DOCS.rglob("*.md")), REPOSITORY / "README.md"]:
        for target in _LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPOSITORY)} -> {target}")
    assert not broken, f"links to missing files: {broken}"


def test_conda_environment_matches_pyproject() -> None:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    required = [*project["dependencies"], *extras["test"], *extras["jobqueue"]]
    environment = (REPOSITORY / "environment.yml").read_text()
    conda_names = {match.lower() for match in re.findall(r"^\s+- ([A-Za-z0-9_.-]+)", environment,
                                                          flags=re.MULTILINE)}
    missing = []
    for requirement in required:
        name = _requirement_name(requirement)
        if not CONDA_NAMES.get(name, {name}) <= conda_names:
            missing.append(name)
    assert not missing, f"environment.yml lacks conda packages for {missing}"


def _fenced_blocks(page: Path, language: str) -> list[str]:
    pattern = rf"^```{language}\n(.*?)^```"
    return re.findall(pattern, page.read_text(), flags=re.MULTILINE | re.DOTALL)


def _normalise_worker_command(script: str) -> list[str]:
    """Replace the machine-specific interpreter path and scheduler address of a job script."""
    worker = "-m distributed.cli.dask_worker"
    script = re.sub(rf"^\S+ {re.escape(worker)}", f"PYTHON {worker}",
                    script, flags=re.MULTILINE)
    script = re.sub(r"tcp://[\d.]+:\d+", "tcp://ADDRESS", script)
    return [line.rstrip() for line in script.strip().splitlines()]


def _doc_job_script(config: str, tmp_path: Path) -> str:
    values = yaml.safe_load(config)
    # Bind the scheduler built for the check to the loopback interface only.
    values["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": ":0"}
    path = tmp_path / f"{values['kind']}.yaml"
    path.write_text(yaml.safe_dump(values))
    cluster = make_jobqueue_cluster(path)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def test_distributed_examples_build_job_scripts(tmp_path: Path) -> None:
    configs = {yaml.safe_load(block)["kind"]: block
               for block in _fenced_blocks(DOCS / "distributed.md", "yaml")}
    assert sorted(configs) == ["pbs", "slurm"]

    slurm = _doc_job_script(configs["slurm"], tmp_path)
    for line in ("#SBATCH -p gpu", "#SBATCH -A my-project", "#SBATCH -t 02:00:00",
                 "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=8",
                 "export TF_NUM_INTRAOP_THREADS=8", "module load cuda/12"):
        assert line in slurm.splitlines()
    assert "--nthreads 8" in slurm

    pbs = _doc_job_script(configs["pbs"], tmp_path)
    for line in ("#PBS -q workq", "#PBS -A my-project", "#PBS -l walltime=02:00:00",
                 "#PBS -l select=1:ncpus=8:mem=32GB:ngpus=1",
                 "export TF_NUM_INTRAOP_THREADS=8", "module load cuda/12"):
        assert line in pbs.splitlines()
    assert "--nthreads 8" in pbs


def test_distributed_printed_script_matches(tmp_path: Path) -> None:
    slurm_config = next(block for block in _fenced_blocks(DOCS / "distributed.md", "yaml")
                        if block.startswith("kind: slurm"))
    printed = next(block for block in _fenced_blocks(DOCS / "distributed.md", "text")
                   if block.startswith("#!/usr/bin/env bash"))
    generated = _doc_job_script(slurm_config, tmp_path)
    assert _normalise_worker_command(generated) == _normalise_worker_command(printed)


def test_api_page_lists_public_names() -> None:
    reference = (DOCS / "api.md").read_text()
    public = [name for name in ptychozarr.__all__ if not name.startswith("__")]
    public += list(plotting.__all__) + list(errors.__all__)
    missing = sorted(name for name in public if f"`{name}" not in reference)
    assert not missing, f"public names missing from docs/api.md: {missing}"


def _resolves(dotted: str) -> bool:
    """Return whether ``dotted`` names a module, or an attribute of one, that exists."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_api_page_names_exist() -> None:
    named = set(re.findall(r"`(ptychozarr(?:\.\w+)+)", (DOCS / "api.md").read_text()))
    missing = sorted(name for name in named if not _resolves(name))
    assert not missing, f"docs/api.md names what does not exist: {missing}"
