"""Render the book from the executed notebooks, with the ledger and environment pages.

The Sphinx source is staged under ``<build>/site``: the configuration, the
front matter from ``book/``, and each chapter's *executed* notebook in place
of its MyST source.  Jupyter Book then renders it with execution off, so the
outputs a reader sees are the outputs whose claims were checked.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from .. import __version__
from ..claims import CLAIM_MIME, check_record, format_value
from .audit import audit_record, robustness
from .chapters import BookError, load_chapter, toc_chapters
from .ledger import claim_status, ledger_path, load_ledger

LEDGER_MARKER = "<!-- negsamp:claims-table -->"
ENVIRONMENT_MARKER = "<!-- negsamp:environment -->"
REPORTED_PACKAGES = (
    "torch", "numpy", "scipy", "sympy", "scikit-learn", "matplotlib", "umap-learn", "networkx",
    "pandas", "papermill", "jupytext", "jupyter-book", "myst-nb", "sphinx",
)


def _anchor(claim_id: str) -> str:
    return "claim-" + claim_id.replace(".", "-")


def _cell(text: str) -> str:
    return f"<td>{html.escape(str(text))}</td>"


def _robustness_cells(summary: dict | None, audit: dict) -> tuple[str, str]:
    """Return the seed-spread cell and the flags cell of a ledger row."""
    flags = []
    if audit["status"] in ("vacuous", "failing"):
        flags.append(f"{audit['status']}: {audit['detail']}")
    if summary is None or len(summary["values"]) < 2:
        spread = "one seed"
    else:
        spread = f"sd {format_value(summary['sd'])} over {len(summary['values'])} seeds"
        if summary["fragile"]:
            flags.append("fragile: " + ("failed at a seed" if summary["failed_at_some_seed"]
                                        else "margin below one seed-to-seed sd"))
        elif audit["status"] == "can-fail" and summary["sd"] > 0:
            spread += f"; margin {summary['margin_in_sd']:.3g} sd"
    return spread, "; ".join(flags) or "-"


def render_claims_table(ledger: dict, chapter_order: list[str]) -> str:
    """Return the ledger as an HTML table (raw block for MyST), one row per claim.

    Besides each claim's check it shows the seed-to-seed spread when runs
    at several seeds are recorded, and flags fragile and vacuous claims
    (see :mod:`negsamp.book.audit`).
    """
    rows = []
    counts: dict[str, int] = {}
    flagged = 0
    names = [name for name in chapter_order if name in ledger["chapters"]]
    for name in names:
        summaries = robustness(ledger, name)
        for record in ledger["chapters"][name].get("claims", []):
            status = claim_status(record)
            counts[status] = counts.get(status, 0) + 1
            audit = audit_record(record)
            spread, flags = _robustness_cells(summaries.get(record["id"]), audit)
            flagged += flags != "-"
            link = f'<a href="../chapters/{name}.html#{_anchor(record["id"])}"><code>{html.escape(record["id"])}</code></a>'
            unit = f" {record['unit']}" if record.get("unit") else ""
            where = f"{record.get('profile')}, {record.get('device')}"
            rows.append(
                f'<tr class="negsamp-{status}"><td>{link}<br><small>{html.escape(name)}</small></td>'
                f"<td>{html.escape(record['statement'])}<br><small><i>{html.escape(record['source'])}</i></small></td>"
                + _cell(record["expectation"])
                + f"<td>{html.escape(record['formatted'] + unit)}<br><small>{html.escape(where)}</small></td>"
                + _cell(spread) + f'<td class="negsamp-status">{status}</td>'
                + f'<td class="negsamp-flags">{html.escape(flags)}</td></tr>'
            )
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no claims"
    header = ("<tr><th>claim and chapter</th><th>statement and source</th><th>expected (tolerance)</th>"
              "<th>measured (profile, device)</th><th>spread over seeds</th><th>status</th><th>flags</th></tr>")
    return (
        f"```{{raw}} html\n<p class=\"negsamp-summary\">{len(names)} chapters, {html.escape(summary)}; "
        f"{flagged} claims flagged.</p>\n"
        f'<table class="negsamp-ledger">\n<thead>{header}</thead>\n<tbody>\n' + "\n".join(rows)
        + "\n</tbody>\n</table>\n```\n"
    )


def _package_versions() -> list[tuple[str, str]]:
    versions = []
    for package in REPORTED_PACKAGES:
        try:
            versions.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((package, "not installed"))
    return versions


def _git_commit(root: Path) -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = result.stdout.strip() if result.returncode == 0 else "unknown"
    if commit != "unknown":
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if dirty:
            commit += " (with uncommitted changes)"
    return commit


def render_environment(ledger: dict, chapter_order: list[str], root: Path) -> str:
    """Return the environment page body: machine, packages, and per-chapter and per-cell times."""
    lines = ["## Machine and commit", "", "| item | value |", "|---|---|"]
    lines.append(f"| git commit | `{_git_commit(root)}` |")
    lines.append(f"| Python | {platform.python_version()} |")
    lines.append(f"| platform | {platform.platform()} |")
    lines.append(f"| CPU cores visible | {len(__import__('os').sched_getaffinity(0))} |")
    lines += ["", "## Package versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in _package_versions()]
    lines += ["", "## Chapter runs", "",
              "Run time is the wall-clock time of the rendered run, kernel start included; CPU time is what the "
              "chapter's kernel used (all threads). The budget is the CPU time the chapter declares for its "
              "profile, and a run over it fails.", "",
              "| chapter | status | profile | device | seeds | claims | run time (s) | CPU time (s) | budget (s) "
              "| kernel Python |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name in chapter_order:
        entry = ledger["chapters"].get(name)
        if entry is None:
            lines.append(f"| {name} | not run | | | | | | | | |")
            continue
        devices = sorted({str(record.get("device")) for record in entry.get("claims", [])}) or ["-"]
        checked = [record for record in entry.get("claims", []) if record["kind"] != "reported"]
        seeds = [str(entry["seed"])] + sorted(ledger.get("seed_runs", {}).get(name, {}), key=int)
        budget = entry.get("budget_s")
        lines.append(
            f"| [{name}](../chapters/{name}) | {entry['status']} | {entry['profile']} | {', '.join(devices)} | "
            f"{', '.join(seeds)} | {len(checked)} | {entry['duration_s']:.1f} | "
            f"{'-' if entry.get('cpu_s') is None else format(entry['cpu_s'], '.1f')} | "
            f"{'-' if budget is None else f'{budget:g}'} | {entry.get('footer', {}).get('python', '-')} |"
        )
    lines += ["", "## Full profile", "",
              "The `full` profile is sized for a GPU; each chapter declares its budget there and, where measured, "
              "what the same run costs on this kind of CPU.", "",
              "| chapter | full-profile budget on a GPU (s) | estimated CPU time (s) |", "|---|---|---|"]
    for chapter in toc_chapters(root):
        meta = load_chapter(chapter).metadata.get("negsamp", {})
        gpu = meta.get("budget_s", {}).get("full")
        cpu = meta.get("full_cpu_s")
        lines.append(f"| {chapter.name} | {'-' if gpu is None else gpu} | {'-' if cpu is None else cpu} |")
    lines += ["", "## Slowest cells", "", "| chapter | cell | seconds | first line |", "|---|---|---|---|"]
    timed = []
    for name in chapter_order:
        entry = ledger["chapters"].get(name) or {}
        for cell in entry.get("cell_times", []):
            timed.append((cell["duration_s"], name, cell["cell"], cell["first_line"]))
    for seconds, name, cell, first_line in sorted(timed, reverse=True)[:15]:
        escaped = html.escape(first_line).replace("|", "&#124;").replace("`", "")
        lines.append(f"| {name} | {cell} | {seconds:.2f} | <code>{escaped}</code> |")
    lines += ["", "## Every cell", "", "Per-cell times from papermill's metadata, one table per chapter.", "",
              "```{raw} html"]
    for name in chapter_order:
        cells = (ledger["chapters"].get(name) or {}).get("cell_times", [])
        if not cells:
            continue
        lines.append(f"<details><summary>{html.escape(name)}: {len(cells)} cells, "
                     f"{sum(cell['duration_s'] for cell in cells):.1f} s</summary>")
        lines.append('<table class="negsamp-cells"><tr><th>cell</th><th>seconds</th><th>first line</th></tr>')
        for cell in cells:
            lines.append(f"<tr><td>{cell['cell']}</td><td>{cell['duration_s']:.2f}</td>"
                         f"<td><code>{html.escape(cell['first_line'])}</code></td></tr>")
        lines.append("</table></details>")
    lines.append("```")
    return "\n".join(lines) + "\n"


def _fill(template: Path, marker: str, body: str) -> str:
    text = template.read_text(encoding="utf-8")
    if marker not in text:
        raise BookError(f"{template} lacks the marker {marker}; the generated content has nowhere to go")
    return text.replace(marker, body)


def _write_render_copy(executed: Path, target: Path) -> None:
    """Copy an executed notebook without the raw claim records, which only the ledger reads.

    Sphinx would otherwise warn about their unknown MIME type; the verdict
    line of each claim (HTML and plain text) stays.
    """
    notebook = nbformat.read(executed, as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(CLAIM_MIME, None)
    nbformat.write(notebook, target)


def check_ready(root: Path, build_dir: Path) -> tuple[dict, list[str]]:
    """Return the ledger and TOC order if every TOC chapter has passed; raise :class:`BookError` otherwise."""
    ledger = load_ledger(ledger_path(build_dir))
    order = [chapter.name for chapter in toc_chapters(root)]
    problems = []
    for name in order:
        entry = ledger["chapters"].get(name)
        if entry is None:
            problems.append(f"{name}: not executed (run `negsamp run {name}`)")
        elif entry["status"] != "passed" or not all(check_record(r) for r in entry.get("claims", [])):
            problems.append(f"{name}: last run {entry['status']}")
        elif not entry.get("executed") or not Path(entry["executed"]).exists():
            problems.append(f"{name}: executed notebook missing (run `negsamp run {name}`)")
    if problems:
        raise BookError("cannot render the book:\n  " + "\n  ".join(problems))
    return ledger, order


def stage_site(root: Path, build_dir: Path, ledger: dict, order: list[str]) -> Path:
    """Copy configuration, front matter and executed notebooks into ``<build>/site``."""
    site = Path(build_dir) / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, site / name)
    shutil.copytree(root / "book", site / "book")
    chapters_dir = site / "chapters"
    chapters_dir.mkdir()
    for item in (root / "chapters").iterdir():
        if item.suffix != ".md" and item.is_file():
            shutil.copy2(item, chapters_dir / item.name)
    for name in order:
        _write_render_copy(Path(ledger["chapters"][name]["executed"]), chapters_dir / f"{name}.ipynb")
    claims_page = site / "book" / "claims.md"
    claims_page.write_text(_fill(claims_page, LEDGER_MARKER, render_claims_table(ledger, order)), encoding="utf-8")
    environment_page = site / "book" / "environment.md"
    environment_page.write_text(
        _fill(environment_page, ENVIRONMENT_MARKER, render_environment(ledger, order, root)), encoding="utf-8"
    )
    return site


STAMP_FILE = ".negsamp-build-stamp"


def site_digest(root: Path, build_dir: Path) -> str:
    """Return a SHA-256 over everything the HTML is made from.

    That is the ledger (which changes with every executed run), the
    configuration, the front matter under ``book/``, the executed notebooks,
    the code that generates the pages and the library version, so an
    unchanged digest means an unchanged book.
    """
    digest = hashlib.sha256()
    paths = [ledger_path(build_dir), root / "_config.yml", root / "_toc.yml"]
    paths += sorted(path for path in (root / "book").rglob("*") if path.is_file())
    paths += sorted(path for path in (root / "chapters").iterdir() if path.is_file() and path.suffix != ".md")
    paths += sorted((Path(build_dir) / "executed").glob("*.ipynb"))
    paths += sorted(Path(__file__).parent.glob("*.py"))  # the page generators themselves
    for path in paths:
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    digest.update(__version__.encode())
    return digest.hexdigest()


def build_html(root: Path, build_dir: Path, strict: bool = True, force: bool = False) -> tuple[Path, bool]:
    """Stage the site and render it with Jupyter Book; return the HTML folder and whether it rendered.

    With ``strict`` every Sphinx warning is an error (``-W --keep-going``).
    Rendering is skipped when :func:`site_digest` matches the last
    successful build, unless ``force``.
    """
    ledger, order = check_ready(root, build_dir)
    output_root = Path(build_dir).resolve().parent if Path(build_dir).name == "_build" else Path(build_dir).resolve()
    html_dir = output_root / "_build" / "html"
    stamp = html_dir / STAMP_FILE
    digest = site_digest(root, build_dir)
    if not force and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == digest \
            and (html_dir / "index.html").exists():
        return html_dir, False
    site = stage_site(root, build_dir, ledger, order)
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(site),
               "--path-output", str(output_root), "--all"]
    if strict:
        command += ["-W", "--keep-going"]
    completed = subprocess.run(command, cwd=root)
    if completed.returncode != 0:
        raise BookError(f"jupyter-book build failed with exit code {completed.returncode}; see the messages above")
    if not (html_dir / "index.html").exists():
        raise BookError(f"jupyter-book finished but {html_dir / 'index.html'} is missing")
    stamp.write_text(digest + "\n", encoding="utf-8")
    return html_dir, True
