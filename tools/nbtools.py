"""Developer helper: build a notebook from (kind, source) pairs with nbformat, outputs empty.

Used to author the numbered notebooks; the .ipynb files are the source of truth that users edit in
JupyterLab. ``python tools/nbtools.py check`` verifies every notebook has no outputs and one
``parameters`` cell (the same checks as the test suite).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def build(cells: list[tuple[str, str]], path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        src = src.strip("\n")
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
        elif kind == "params":
            c = nbformat.v4.new_code_cell(src)
            c.metadata["tags"] = ["parameters"]
            nb.cells.append(c)
        else:
            nb.cells.append(nbformat.v4.new_code_cell(src))
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i:02d}"
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["check"]:
    bad = 0
    for p in sorted(Path(__file__).resolve().parents[1].glob("notebooks/[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        outputs = sum(len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
        params = sum("parameters" in c.metadata.get("tags", []) for c in nb.cells)
        if outputs or params != 1:
            print(f"{p.name}: {outputs} outputs, {params} parameters cells")
            bad += 1
    sys.exit(1 if bad else 0)
