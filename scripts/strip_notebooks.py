"""Strip outputs, execution counts and run metadata from notebooks before committing them.

``python scripts/strip_notebooks.py notebooks/*.ipynb`` rewrites the files in place;
``--check`` only reports the notebooks that are not stripped (exit status 1 if any).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KEEP_CELL_METADATA = ("tags",)


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip ``nb`` in place; return whether anything changed."""
    changed = False
    for cell in nb.cells:
        extra = {k for k in cell.metadata if k not in KEEP_CELL_METADATA}
        if extra:
            changed = True
            for key in extra:
                del cell.metadata[key]
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
    for key in ("widgets", "papermill"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="report only; exit 1 if a notebook has outputs")
    args = p.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    for path in dirty:
        print(f"{'not stripped' if args.check else 'stripped'}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
