"""The notebook chain: run ``notebooks/NN_*.ipynb`` in order with papermill and write a manifest.

A notebook joins the chain by its two-digit number alone: the runner discovers
``notebooks/[0-9][0-9]_*.ipynb``, so adding ``08_something.ipynb`` needs no edit here.

Parameters come from a *profile* (``workbench/profiles/<name>.yaml``: ``simulate`` settings, global
``parameters`` and per-notebook ``notebooks`` overrides) and from ``-p KEY VALUE`` on the command line
(highest precedence). Each notebook receives only the keys its ``parameters`` cell declares.

The runner stops at the first failing notebook, prints the failing cell's error and still writes the
manifest (``runs/<run id>/manifest.json``): profile, parameters per notebook, package versions, git
commit, hashes of the input data, wall time and status per notebook.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from workbench import atomic, config
from workbench.data.schema import normalise_assets
from workbench.data.simulate import SimConfig, ensure_simulation

#: Packages whose versions go into every manifest.
MANIFEST_PACKAGES = ("numpy", "pandas", "pyarrow", "scipy", "statsmodels", "ta", "numba", "matplotlib", "plotly",
                     "papermill", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
                     "sentence-transformers", "scikit-learn", "tokenizers")


class ChainError(RuntimeError):
    """A notebook failed, or the chain was asked for something impossible."""


@dataclass
class Profile:
    """A run profile (see ``workbench/profiles/*.yaml``)."""

    name: str
    description: str = ""
    workdir: str = "project"  # "project" or "run"
    simulate: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, name_or_path: str) -> "Profile":
        path = Path(name_or_path)
        if not path.suffix:
            path = config.PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in config.PROFILES_DIR.glob("*.yaml"))
            raise ChainError(f"unknown profile {name_or_path!r}; known profiles: {known}")
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - {"description", "workdir", "simulate", "parameters", "notebooks"}
        if unknown:
            raise ChainError(f"{path}: unknown keys {sorted(unknown)}")
        if raw.get("workdir", "project") not in ("project", "run"):
            raise ChainError(f"{path}: workdir must be 'project' or 'run', got {raw['workdir']!r}")
        notebooks = {str(k).zfill(2): dict(v or {}) for k, v in (raw.get("notebooks") or {}).items()}
        return cls(name=path.stem, description=raw.get("description", ""), workdir=raw.get("workdir", "project"),
                   simulate=dict(raw.get("simulate") or {}), parameters=dict(raw.get("parameters") or {}),
                   notebooks=notebooks)

    def sim_config(self, overrides: dict[str, Any] | None = None) -> SimConfig:
        """The simulation of this profile. Its underlyings are the ``ASSETS`` parameter (``-p ASSETS``, then the
        profile's global ``parameters``), else ``simulate.assets``, else BTC only; names as in
        :func:`normalise_assets`."""
        sim = dict(self.simulate)
        assets = (overrides or {}).get("ASSETS", self.parameters.get("ASSETS", sim.pop("assets", None)))
        sim.pop("assets", None)
        try:
            return SimConfig(**sim, **({"assets": normalise_assets(assets)} if assets else {}))
        except (TypeError, ValueError) as exc:
            raise ChainError(f"profile {self.name!r}: bad simulate settings: {exc}") from None


def discover_notebooks(folder: Path | None = None) -> list[Path]:
    """Numbered notebooks ``NN_name.ipynb`` in chain order."""
    folder = folder or config.NOTEBOOKS_DIR
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell (via papermill's inspector)."""
    import papermill

    params = papermill.inspect_notebook(str(notebook))
    if not params:
        raise ChainError(f"{notebook.name} has no cell tagged 'parameters'")
    return {name: spec.get("default") for name, spec in params.items()}


def parse_cli_value(text: str) -> Any:
    """``-p KEY VALUE``: the value is read as YAML (``3`` -> int, ``true`` -> bool, ``15min`` -> str)."""
    return yaml.safe_load(text)


def file_tree_hash(root: Path, per_file: bool = False) -> dict[str, Any]:
    """SHA-256 over the sorted relative paths and contents of every file under ``root``; with ``per_file``, also
    each file's own SHA-256 (``files_sha256``), so that two runs can be compared table by table."""
    h = hashlib.sha256()
    n = size = 0
    each: dict[str, str] = {}
    if root.exists():
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            data = p.read_bytes()
            digest = hashlib.sha256(data)
            h.update(str(p.relative_to(root)).encode())
            h.update(digest.digest())
            each[str(p.relative_to(root))] = digest.hexdigest()
            n += 1
            size += len(data)
    out: dict[str, Any] = {"path": str(root), "files": n, "bytes": size, "sha256": h.hexdigest()}
    if per_file:
        out["files_sha256"] = each
    return out


def package_versions(names: Sequence[str] = MANIFEST_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "workbench": _version("workbench")}
    out.update({n: _version(n) for n in names})
    return out


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def git_state(root: Path = config.PROJ_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


@dataclass
class ChainResult:
    run_dir: Path
    manifest: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.manifest["status"] == "ok"


def run_chain(profile: str = "default", *, only: Sequence[str] | None = None,
              overrides: dict[str, Any] | None = None, run_dir: Path | None = None,
              workdir: Path | None = None, notebooks_dir: Path | None = None,
              kernel_name: str = "python3", log=print) -> ChainResult:
    """Run the numbered notebooks in order; stop at the first failure.

    Parameters
    ----------
    profile
        Profile name (``default``, ``smoke``) or path to a profile YAML.
    only
        Notebook numbers to run (``["01", "02"]``); default all.
    overrides
        ``{KEY: value}`` applied to every notebook that declares ``KEY`` (error if none does).
    run_dir
        Where executed notebooks and the manifest go; default ``runs/<UTC timestamp>-<profile>``.
    workdir
        Work directory for generated data/figures/models; default from the profile (the project root,
        or ``<run_dir>/work``).
    """
    prof = Profile.load(profile)
    overrides = dict(overrides or {})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(run_dir) if run_dir else config.RUNS_DIR / f"{stamp}-{prof.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if workdir is None:
        workdir = config.PROJ_ROOT if prof.workdir == "project" else run_dir / "work"
    paths = config.paths(workdir).ensure()
    notebooks = discover_notebooks(notebooks_dir)
    if only:
        wanted = {str(o).zfill(2) for o in only}
        missing = wanted - {nb.name[:2] for nb in notebooks}
        if missing:
            raise ChainError(f"no notebook numbered {sorted(missing)} in {notebooks_dir or config.NOTEBOOKS_DIR}")
        notebooks = [nb for nb in notebooks if nb.name[:2] in wanted]
    if not notebooks:
        raise ChainError("no notebooks to run")
    declared = {nb.name: declared_parameters(nb) for nb in notebooks}
    unused = [k for k in overrides if not any(k in d for d in declared.values())]
    if unused:
        raise ChainError(f"parameter(s) {unused} are declared by none of {list(declared)}")

    manifest: dict[str, Any] = {
        "run_id": run_dir.name, "profile": prof.name, "profile_description": prof.description,
        "started_utc": datetime.now(timezone.utc).isoformat(), "workdir": str(paths.workdir),
        "run_dir": str(run_dir), "overrides": overrides, "git": git_state(), "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "simulation": None, "inputs": {}, "notebooks": [], "status": "running",
    }
    os.environ[config.WORKDIR_ENV] = str(paths.workdir)  # kernels inherit it
    os.environ.setdefault(config.PROGRESS_ENV, "0")
    config.set_offline()

    t0 = time.perf_counter()
    sim_cfg = prof.sim_config(overrides)
    made = ensure_simulation(sim_cfg, paths.raw)
    manifest["simulation"] = {"config": sim_cfg.to_dict(), "wallet": sim_cfg.wallet,
                              "generated": made is not None, "seconds": round(time.perf_counter() - t0, 3)}
    log(f"[chain] simulation {'generated' if made else 'present'}: {sim_cfg.n_markets} markets, "
        f"wallet {sim_cfg.wallet} ({time.perf_counter() - t0:.1f}s)")
    manifest["inputs"] = {"merged_trades": file_tree_hash(paths.merged_trades),
                          "external": file_tree_hash(paths.external)}
    atomic.write_json(run_dir / "manifest.json", manifest)

    import papermill
    from papermill.exceptions import PapermillExecutionError

    for nb in notebooks:
        key = nb.name[:2]
        merged = {**prof.parameters, **prof.notebooks.get(key, {}), **overrides}
        params = {k: v for k, v in merged.items() if k in declared[nb.name]}
        out_nb = run_dir / nb.name
        entry: dict[str, Any] = {"notebook": nb.name, "parameters": params, "output": str(out_nb), "status": "running"}
        manifest["notebooks"].append(entry)
        log(f"[chain] {nb.name} {params or ''}")
        t_nb = time.perf_counter()
        try:
            papermill.execute_notebook(str(nb), str(out_nb), parameters=params, kernel_name=kernel_name,
                                       progress_bar=False, cwd=str(nb.parent), log_output=False)
        except PapermillExecutionError as exc:
            entry.update(status="failed", seconds=round(time.perf_counter() - t_nb, 2),
                         error={"cell": exc.exec_count, "ename": exc.ename, "evalue": exc.evalue})
            manifest.update(status="failed", finished_utc=datetime.now(timezone.utc).isoformat())
            atomic.write_json(run_dir / "manifest.json", manifest)
            log(f"[chain] FAILED {nb.name} at cell [{exc.exec_count}]: {exc.ename}: {exc.evalue}")
            tb = "\n".join(exc.traceback[-8:]) if exc.traceback else ""
            log(_strip_ansi(tb))
            return ChainResult(run_dir, manifest)
        except Exception as exc:  # kernel died, notebook unreadable...
            entry.update(status="failed", seconds=round(time.perf_counter() - t_nb, 2),
                         error={"ename": type(exc).__name__, "evalue": str(exc)})
            manifest.update(status="failed", finished_utc=datetime.now(timezone.utc).isoformat())
            atomic.write_json(run_dir / "manifest.json", manifest)
            log(f"[chain] FAILED {nb.name}: {type(exc).__name__}: {exc}")
            return ChainResult(run_dir, manifest)
        entry.update(status="ok", seconds=round(time.perf_counter() - t_nb, 2))
        atomic.write_json(run_dir / "manifest.json", manifest)
        log(f"[chain] ok {nb.name} in {entry['seconds']:.1f}s")
    manifest["outputs"] = {"processed": file_tree_hash(paths.processed, per_file=True),
                           "figures": file_tree_hash(paths.figures)}
    manifest.update(status="ok", finished_utc=datetime.now(timezone.utc).isoformat(),
                    seconds=round(time.perf_counter() - t0, 2))
    atomic.write_json(run_dir / "manifest.json", manifest)
    log(f"[chain] done in {manifest['seconds']:.1f}s; manifest {run_dir / 'manifest.json'}")
    return ChainResult(run_dir, manifest)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m workbench run ...")
