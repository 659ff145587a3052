"""Find the book's chapters and check that each one keeps the chapter contract."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import yaml

REQUIRED_PARAMETERS = ("profile", "device", "seed")
KERNEL_NAME = "python3"


class BookError(Exception):
    """A problem with the book's inputs, reported before anything executes."""


@dataclass(frozen=True)
class Chapter:
    """One chapter: its name (file stem), its MyST source, and whether the TOC lists it."""

    name: str
    path: Path
    in_toc: bool


def find_root(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` that holds ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise BookError(
        f"no _toc.yml found in {here} or any folder above it; "
        "run negsamp from the book's folder or pass --root"
    )


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(str(node["file"]))
        for key in ("root", "parts", "chapters", "sections"):
            if key == "root" and key in node:
                files.append(str(node["root"]))
            elif key in node:
                files.extend(_toc_files(node[key]))
    elif isinstance(node, list):
        for item in node:
            files.extend(_toc_files(item))
    return files


def toc_files(root: Path) -> list[str]:
    """Return every document path listed in ``_toc.yml``, in reading order, without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return _toc_files(toc)


def toc_chapters(root: Path) -> list[Chapter]:
    """Return the executable chapters (``chapters/NAME``) listed in ``_toc.yml``, in order."""
    chapters = []
    for entry in toc_files(root):
        path = root / f"{entry}.md"
        if entry.startswith("chapters/"):
            if not path.is_file():
                raise BookError(f"_toc.yml lists {entry!r} but {path} does not exist")
            chapters.append(Chapter(name=Path(entry).name, path=path, in_toc=True))
    return chapters


def resolve_chapters(root: Path, requested: list[str] | None) -> list[Chapter]:
    """Map chapter names (or paths to ``.md`` files outside the TOC) to chapters.

    No names means every chapter in the TOC.  An unknown name raises
    :class:`BookError` listing the valid names.
    """
    known = toc_chapters(root)
    if not requested:
        return known
    by_name = {chapter.name: chapter for chapter in known}
    chosen: list[Chapter] = []
    for item in requested:
        if item.endswith(".md"):
            path = Path(item)
            path = path if path.is_absolute() else (Path.cwd() / path)
            if not path.is_file():
                raise BookError(f"chapter file {item!r} not found")
            path = path.resolve()
            match = next((c for c in known if c.path.resolve() == path), None)
            chosen.append(match or Chapter(name=path.stem, path=path, in_toc=False))
        elif item in by_name:
            chosen.append(by_name[item])
        else:
            valid = ", ".join(sorted(by_name)) or "(none)"
            raise BookError(
                f"unknown chapter {item!r}; valid chapters: {valid} "
                "(or give the path to a chapter's .md file)"
            )
    names = [chapter.name for chapter in chosen]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BookError(f"chapter given more than once: {', '.join(duplicates)}")
    return chosen


def _assigned_names(source: str) -> set[str]:
    tree = ast.parse(source)
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
    return names


def load_chapter(chapter: Chapter):
    """Read a chapter with jupytext and check the contract the runner relies on.

    The kernel must be ``python3`` and exactly one code cell must carry the
    ``parameters`` tag and assign ``profile``, ``device`` and ``seed``.
    Violations raise :class:`BookError` naming the chapter and the fix.
    """
    import jupytext

    try:
        notebook = jupytext.read(chapter.path)
    except Exception as error:  # jupytext raises several unrelated types on bad input
        raise BookError(f"chapter {chapter.name!r}: {chapter.path} could not be read as MyST: {error}") from error
    kernel = notebook.metadata.get("kernelspec", {}).get("name")
    if kernel != KERNEL_NAME:
        raise BookError(
            f"chapter {chapter.name!r} uses kernel {kernel!r}; set 'kernelspec: name: {KERNEL_NAME}' in its front matter"
        )
    tagged = [cell for cell in notebook.cells
              if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise BookError(
            f"chapter {chapter.name!r} has {len(tagged)} cells tagged 'parameters'; "
            "it needs exactly one, assigning profile, device and seed"
        )
    try:
        assigned = _assigned_names(tagged[0].source)
    except SyntaxError as error:
        raise BookError(f"chapter {chapter.name!r}: the parameters cell is not valid Python: {error}") from error
    missing = [name for name in REQUIRED_PARAMETERS if name not in assigned]
    if missing:
        raise BookError(
            f"chapter {chapter.name!r}: the parameters cell does not assign {', '.join(missing)}; "
            f"it must assign {', '.join(REQUIRED_PARAMETERS)}"
        )
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            raise BookError(f"chapter {chapter.name!r} stores cell outputs; chapters are kept without outputs")
    return notebook


def chapter_budget(notebook, profile: str) -> float | None:
    """Return the chapter's declared run-time budget for ``profile``, in seconds of kernel CPU time, if any.

    CPU time (user plus system, all threads of the kernel and its children)
    rather than wall-clock time keeps the check independent of other load on
    a shared machine; a chapter within a CPU-time budget of B seconds also
    finishes within B wall-clock seconds on an idle machine.
    """
    budgets = notebook.metadata.get("negsamp", {}).get("budget_s", {})
    value = budgets.get(profile)
    return float(value) if value is not None else None
