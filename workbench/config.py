"""Every path the project uses, and the offline settings.

All paths derive from the project root (``PROJ_ROOT``), following cookiecutter-data-science:
``data/raw`` (never edited) -> ``data/interim`` -> ``data/processed``. Third-party example data
that ships with the project, with its attribution, lives in ``data/external``.

A *work directory* holds everything a run generates (data/raw|interim|processed, figures, models).
By default it is the project root; the chain runner points it elsewhere (for example a smoke run
under ``runs/``) through the environment variable ``WORKBENCH_WORKDIR``, which the notebook kernels
inherit. Call :func:`paths` (not module constants) so the variable is read at call time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJ_ROOT: Path = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR: Path = PROJ_ROOT / "notebooks"
EXTERNAL_DIR: Path = PROJ_ROOT / "data" / "external"
RUNS_DIR: Path = PROJ_ROOT / "runs"
PROFILES_DIR: Path = Path(__file__).resolve().parent / "profiles"

WORKDIR_ENV = "WORKBENCH_WORKDIR"
#: Set to "0" to silence tqdm progress bars (the chain runner does, so headless logs stay readable).
PROGRESS_ENV = "WORKBENCH_PROGRESS"

_OFFLINE_FLAGS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline() -> None:
    """Set the Hugging Face offline flags unless the user already set them.

    Must run before ``transformers`` is imported: ``workbench/__init__.py`` calls it, so importing
    any workbench module first is enough. Nothing in this project downloads weights at run time.
    """
    for key, value in _OFFLINE_FLAGS.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class Paths:
    """Resolved project paths for one work directory."""

    root: Path
    workdir: Path

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def raw(self) -> Path:
        """Immutable inputs: simulated wallet files, the simulator's hidden truth, fetched files."""
        return self.data / "raw"

    @property
    def merged_trades(self) -> Path:
        """``<address>/btc-updown-15m-<start>_prices.json`` files, one folder per wallet."""
        return self.raw / "merged_trades"

    @property
    def simulator_truth(self) -> Path:
        """The simulated trader's true action probabilities. Evaluation only: training never reads it."""
        return self.raw / "simulator_truth"

    @property
    def interim(self) -> Path:
        return self.data / "interim"

    @property
    def processed(self) -> Path:
        return self.data / "processed"

    @property
    def external(self) -> Path:
        """Shipped third-party data with attribution (always under the project root)."""
        return EXTERNAL_DIR

    @property
    def figures(self) -> Path:
        return self.workdir / "figures"

    @property
    def models(self) -> Path:
        return self.workdir / "models"

    @property
    def runs(self) -> Path:
        return RUNS_DIR

    def ensure(self) -> "Paths":
        """Create the generated folders (idempotent) and return self."""
        for p in (self.raw, self.interim, self.processed, self.figures, self.models):
            p.mkdir(parents=True, exist_ok=True)
        return self


def paths(workdir: str | os.PathLike[str] | None = None) -> Paths:
    """Return the project paths.

    Parameters
    ----------
    workdir
        Folder for generated data, figures and models. Defaults to ``$WORKBENCH_WORKDIR`` when set,
        else the project root.
    """
    wd = workdir if workdir is not None else os.environ.get(WORKDIR_ENV) or PROJ_ROOT
    return Paths(root=PROJ_ROOT, workdir=Path(wd).resolve())


def progress_enabled() -> bool:
    """Whether tqdm progress bars should be shown (``WORKBENCH_PROGRESS=0`` turns them off)."""
    return os.environ.get(PROGRESS_ENV, "1") not in ("0", "false", "False", "")


def progress(iterable: Any, desc: str, total: int | None = None, enabled: bool | None = None) -> Any:
    """``iterable`` wrapped in a tqdm progress bar (a widget in Jupyter, text in a terminal), shown only when
    :func:`progress_enabled` (interactive use; the chain runner and the tests turn bars off) or ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False,
                disable=not (progress_enabled() if enabled is None else enabled))
