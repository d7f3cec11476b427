"""Project hygiene: the two commands, environment.yml in sync with pyproject.toml, thin clean notebooks."""

from __future__ import annotations

import ast
import re
import tomllib

import nbformat
import pytest
import yaml
from papermill.translators import PythonTranslator

from workbench.chain import discover_notebooks
from workbench.config import PROJ_ROOT

PYPROJECT = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())
ENV = yaml.safe_load((PROJ_ROOT / "environment.yml").read_text())
MAKEFILE = (PROJ_ROOT / "Makefile").read_text()


def _pip_section() -> list[str]:
    return next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict) and "pip" in d)


def test_environment_yml_matches_pyproject():
    assert ENV["channels"] == ["conda-forge"]
    conda = [d for d in ENV["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(x) for x in python.split("=")[1].split("."))
    requires = PYPROJECT["project"]["requires-python"]  # ">=3.10,<3.13"
    lo = tuple(int(x) for x in re.search(r">=([\d.]+)", requires)[1].split("."))
    hi = tuple(int(x) for x in re.search(r"<([\d.]+)", requires)[1].split("."))
    assert lo <= version < hi, (python, requires)
    # conda lists nothing but python and pip: every other dependency comes from pyproject via pip
    assert sorted(d.split("=")[0] for d in conda) == ["pip", "python"]
    pip = _pip_section()
    extras = re.fullmatch(r"-e \.\[([\w,]+)\]", pip[-1])
    assert extras, pip
    for extra in extras[1].split(","):
        assert extra in PYPROJECT["project"]["optional-dependencies"]
    torch_pin = re.search(r"^TORCH_PIN := (\S+)", MAKEFILE, re.M)[1]
    assert pip[0] == torch_pin  # the same pinned CPU torch, installed first
    torch_spec = next(d for d in PYPROJECT["project"]["optional-dependencies"]["ml"] if d.startswith("torch"))
    lower = re.search(r">=([\d.]+)", torch_spec)[1]
    assert tuple(map(int, torch_pin.split("==")[1].split("."))) >= tuple(map(int, lower.split(".")))


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (PROJ_ROOT / "README.md").read_text()
    head = readme[:600]
    assert "make run" in head and "make test" in head
    assert "make test" in (PROJ_ROOT / ".ci" / "run").read_text()
    for target in ("run:", "test:", "venv:", "help:"):
        assert re.search(rf"^{target}.*## ", MAKEFILE, re.M), target


NOTEBOOKS = discover_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_thin_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs committed"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "title first"
    for line in params[0].source.splitlines():  # literals only, each with a trailing comment
        if not line.strip():
            continue
        tree = ast.parse(line.split("#")[0] if line.count("#") == 1 else line)
        assert isinstance(tree.body[0], ast.Assign), line
        ast.literal_eval(tree.body[0].value)
        assert "  # " in line, f"parameter without a comment: {line}"
    # papermill must see every parameter, or an override is silently ignored (its parser rejects e.g. '=' in a comment)
    seen = {p.name for p in PythonTranslator.inspect(params[0])}
    names = {ast.parse(line.split("#")[0]).body[0].targets[0].id for line in params[0].source.splitlines() if line.strip()}
    assert names == seen, f"papermill cannot parse the parameters {sorted(names - seen)}"
    for c in code:
        tree = ast.parse(c.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"def/class belongs in the package: {[d.name for d in defs]}"
        assert "../" not in c.source and "!pip" not in c.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_pairs_are_in_sync_and_carry_no_state(path):
    """Each notebook is one source in two files: the .ipynb JupyterLab opens and its jupytext percent script."""
    import jupytext

    script = path.with_suffix(".py")
    assert script.exists(), f"{script.name} missing: run `jupytext --sync {path}`"
    nb = nbformat.read(path, as_version=4)
    paired = jupytext.read(script)

    def cells(n):
        return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in n.cells]

    assert cells(nb) == cells(paired), f"{path.name} and {script.name} differ: run `jupytext --sync {path}`"
    assert "widgets" not in nb.metadata, "widget state committed"
    assert all("widgets" not in c.metadata and not c.get("attachments") for c in nb.cells)


def test_jupytext_and_precommit_are_configured():
    config = tomllib.loads((PROJ_ROOT / "jupytext.toml").read_text())
    assert config["formats"] == "ipynb,py:percent"
    hooks = yaml.safe_load((PROJ_ROOT / ".pre-commit-config.yaml").read_text())
    ids = {h["id"] for repo in hooks["repos"] for h in repo["hooks"]}
    assert {"jupytext", "nbstripout"} <= ids
    deps = PYPROJECT["project"]["dependencies"]
    assert any(d.startswith("jupytext") for d in deps)


# the chain's stages in order; a module may import only from its own stage, an earlier one or the shared modules
STAGES = ["data", "features", "labels", "twin", "agent", "rules", "analysis", "rlaif", "llm", "rlhf"]
SHARED = {"config", "atomic", "metrics", "plots"}


def _imports(path) -> set[str]:
    """Every ``workbench.x`` module imported anywhere in ``path`` (lazy imports inside functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbench"):
            out.add(node.module)
            if node.module == "workbench":
                out.update(f"workbench.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("workbench"))
    return out


def test_the_package_is_layered_like_the_chain():
    root = PROJ_ROOT / "workbench"
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if len(rel) == 1:  # shared modules import no stage; chain.py and cli.py sit above the stages
            if path.stem in SHARED:
                bad += [(path.name, m) for m in _imports(path) if m.split(".")[1:2] and m.split(".")[1] in STAGES]
            continue
        stage = STAGES.index(rel[0])
        for m in _imports(path):
            parts = m.split(".")
            if len(parts) > 1 and parts[1] in STAGES and STAGES.index(parts[1]) > stage:
                bad.append(("/".join(rel), m))
    assert not bad, f"a stage imports a later one: {bad}"


def test_modules_stay_small():
    sizes = {str(p.relative_to(PROJ_ROOT)): len(p.read_text().splitlines()) for p in (PROJ_ROOT / "workbench").rglob("*.py")}
    assert max(sizes.values()) <= 600, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
