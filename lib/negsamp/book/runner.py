"""Execute chapters with papermill and collect their claim records into the ledger.

Each chapter goes MyST source -> jupytext notebook -> papermill (with the
``profile``, ``device`` and ``seed`` parameters injected) -> executed notebook
under ``<build>/executed/`` -> claim records -> ledger entry.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from .. import __version__
from ..claims import check_record, records_from_notebook
from ..repro import CHAPTER_ENV, JOBS_ENV, validate_device_name, validate_profile, validate_seed
from .chapters import BookError, Chapter, load_chapter
from .ledger import ledger_path, record_chapter

log = logging.getLogger("negsamp")

FOOTER_MIME = "application/vnd.negsamp.run+json"
FOOTER_TAG = "negsamp-footer"
# Runs as the last cell of every chapter; it reports what the kernel imported
# and which versions it saw.  The "remove-cell" tag keeps it out of the book.
FOOTER_SOURCE = """\
import sys as _sys, json as _json, platform as _platform
from IPython.display import display as _display
_modules = {name: getattr(module, "__file__", None) for name, module in list(_sys.modules.items())
            if name == "negsamp" or name.startswith("negsamp.")}
_versions = {}
for _name in ("numpy", "scipy", "sympy", "torch", "sklearn", "matplotlib", "umap", "networkx", "pandas"):
    if _name in _sys.modules:
        _versions[_name] = getattr(_sys.modules[_name], "__version__", None)
_display({"text/plain": "run footer", "%s": _json.loads(_json.dumps({
    "python": _sys.version.split()[0], "executable": _sys.executable,
    "platform": _platform.platform(), "modules": _modules, "versions": _versions}))}, raw=True)
""" % FOOTER_MIME


@dataclass(frozen=True)
class RunOptions:
    """How to run chapters: parameters, parallelism, limits and folders."""

    root: Path
    build_dir: Path
    profile: str = "quick"
    device: str = "auto"
    seed: int = 0
    jobs: int = 1
    cell_timeout: int = 900
    log_output: bool = True


def validate_options(options: RunOptions) -> None:
    """Reject bad options before anything executes; raise :class:`BookError` naming the value."""
    try:
        validate_profile(options.profile)
        validate_device_name(options.device)
        validate_seed(options.seed)
    except ValueError as error:
        raise BookError(str(error)) from None
    if not isinstance(options.jobs, int) or options.jobs < 1:
        raise BookError(f"--jobs must be a positive integer, got {options.jobs!r}")
    if not isinstance(options.cell_timeout, int) or options.cell_timeout < 1:
        raise BookError(f"--cell-timeout must be a positive number of seconds, got {options.cell_timeout!r}")
    if options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BookError(
                "device 'cuda' was requested but torch sees no CUDA device on this machine; "
                "use --device auto (GPU when present, else CPU) or --device cpu"
            )


def _kernel_dir(build_dir: Path) -> Path:
    """Write a ``python3`` kernelspec that starts this interpreter and return its Jupyter path.

    Putting it first on ``JUPYTER_PATH`` makes every chapter run in the same
    environment as the runner, whatever kernels the user has installed.
    """
    base = Path(build_dir) / "jupyter"
    spec_dir = base / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (negsamp)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return base


def _prepare_notebook(chapter: Chapter):
    notebook = load_chapter(chapter)
    footer = nbformat.v4.new_code_cell(FOOTER_SOURCE, metadata={"tags": ["remove-cell", FOOTER_TAG]})
    notebook.cells.append(footer)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def _footer(notebook) -> dict:
    for cell in notebook.cells:
        if FOOTER_TAG in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if FOOTER_MIME in output.get("data", {}):
                    return dict(output["data"][FOOTER_MIME])
    return {}


def _cell_times(notebook) -> list[dict]:
    times = []
    for index, cell in enumerate(notebook.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell.get("cell_type") != "code" or meta.get("duration") is None:
            continue
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
        times.append({"cell": index, "duration_s": round(float(meta["duration"]), 3), "first_line": first_line[:80]})
    return times


def _error_details(error) -> dict:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        first_line = next((line for line in (error.source or "").splitlines() if line.strip()), "")
        return {
            "cell_index": error.cell_index,
            "exec_count": error.exec_count,
            "cell_first_line": first_line[:120],
            "ename": error.ename,
            "evalue": error.evalue,
        }
    return {"cell_index": None, "exec_count": None, "cell_first_line": "", "ename": type(error).__name__,
            "evalue": str(error)}


def _configure_logging(prefix: str, log_file: Path | None) -> list[logging.Handler]:
    formatter = logging.Formatter(f"[{prefix}] %(message)s" if prefix else "%(message)s")
    handlers: list[logging.Handler] = []
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    handlers.append(stream)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, mode="w", encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handlers.append(to_file)
    for name in ("papermill", "negsamp.chapter"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)
    return handlers


def _remove_handlers(handlers: list[logging.Handler]) -> None:
    for name in ("papermill", "negsamp.chapter"):
        logger = logging.getLogger(name)
        for handler in handlers:
            logger.removeHandler(handler)
    for handler in handlers:
        handler.close()


def execute_chapter(chapter: Chapter, options: RunOptions) -> dict:
    """Execute one chapter and return its ledger entry; never raises for chapter failures."""
    import papermill

    build_dir = Path(options.build_dir)
    executed_dir = build_dir / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    handlers = _configure_logging(chapter.name if options.jobs > 1 else "", build_dir / "logs" / f"{chapter.name}.log")
    chapter_log = logging.getLogger("negsamp.chapter")
    input_path = executed_dir / f".{chapter.name}.input.ipynb"
    partial_path = executed_dir / f".{chapter.name}.partial.ipynb"
    output_path = executed_dir / f"{chapter.name}.ipynb"
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    saved_environment = {key: os.environ.get(key) for key in (CHAPTER_ENV, JOBS_ENV, "JUPYTER_PATH", "PYDEVD_DISABLE_FILE_VALIDATION")}
    error = None
    try:
        notebook = _prepare_notebook(chapter)
        nbformat.write(notebook, input_path)
        os.environ[CHAPTER_ENV] = chapter.name
        os.environ[JOBS_ENV] = str(options.jobs)
        os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        jupyter_path = str(_kernel_dir(build_dir))
        previous = saved_environment["JUPYTER_PATH"]
        os.environ["JUPYTER_PATH"] = jupyter_path + (os.pathsep + previous if previous else "")
        chapter_log.info("running chapter %s (profile %s, device %s, seed %d)",
                         chapter.name, options.profile, options.device, options.seed)
        papermill.execute_notebook(
            str(input_path),
            str(partial_path),
            parameters={"profile": options.profile, "device": options.device, "seed": options.seed},
            kernel_name="python3",
            progress_bar=False,
            log_output=options.log_output,
            execution_timeout=options.cell_timeout,
            cwd=str(chapter.path.parent),
        )
    except Exception as caught:  # papermill, nbclient and the kernel raise many types; all mean a failed chapter
        error = caught
    finally:
        for key, value in saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    duration = time.perf_counter() - clock

    claims: list[dict] = []
    cell_times: list[dict] = []
    footer: dict = {}
    if partial_path.exists():
        executed = nbformat.read(partial_path, as_version=4)
        claims = records_from_notebook(executed)
        cell_times = _cell_times(executed)
        footer = _footer(executed)
        os.replace(partial_path, output_path)
    input_path.unlink(missing_ok=True)

    ids = [record["id"] for record in claims]
    duplicated = sorted({claim_id for claim_id in ids if ids.count(claim_id) > 1})
    details = _error_details(error) if error is not None else None
    if details is None and duplicated:
        details = {"ename": "DuplicateClaimId", "evalue": f"claim ids recorded more than once: {', '.join(duplicated)}",
                   "cell_index": None, "exec_count": None, "cell_first_line": ""}
    checked = [record for record in claims if record["kind"] != "reported"]
    if details is None and chapter.in_toc and not checked:
        details = {"ename": "NoClaims", "evalue": "the chapter recorded no checked claims; every chapter must check its numbers",
                   "cell_index": None, "exec_count": None, "cell_first_line": ""}
    failed_claims = [record for record in claims if not check_record(record) or not record.get("passed", False)]
    claim_failed = details is not None and details["ename"] == "ClaimFailed"
    if claim_failed or (details is None and failed_claims):
        status = "failed"
    elif details is not None:
        status = "error"
    else:
        status = "passed"
    result = {
        "chapter": chapter.name,
        "source": str(chapter.path),
        "in_toc": chapter.in_toc,
        "status": status,
        "error": details,
        "failed_claims": [record["id"] for record in failed_claims],
        "claims": claims,
        "profile": options.profile,
        "device": options.device,
        "seed": options.seed,
        "jobs": options.jobs,
        "duration_s": round(duration, 3),
        "cell_times": cell_times,
        "footer": footer,
        "executed": str(output_path) if output_path.exists() else None,
        "started": started.isoformat(timespec="seconds"),
        "negsamp_version": __version__,
        "runner_python": sys.version.split()[0],
        "runner_platform": platform.platform(),
    }
    chapter_log.info("%s", summarize_result(result))
    _remove_handlers(handlers)
    return result


def summarize_result(result: dict) -> str:
    """Describe a chapter result in one or a few lines, naming the failing cell and claim."""
    name = result["chapter"]
    duration = result["duration_s"]
    checked = [record for record in result["claims"] if record["kind"] != "reported"]
    if result["status"] == "passed":
        return f"chapter {name} passed: {len(checked)} claims checked in {duration:.1f} s"
    error = result["error"] or {}
    lines = [f"chapter {name} {result['status'].upper()} after {duration:.1f} s"]
    if error.get("exec_count") is not None:
        lines.append(f"  at cell In [{error['exec_count']}] (notebook cell {error['cell_index']}), "
                     f"which starts: {error['cell_first_line']}")
    if error:
        lines.append(f"  {error['ename']}: {error['evalue']}")
    for record in result["claims"]:
        if record["id"] in result["failed_claims"]:
            lines.append(
                f"  claim {record['id']}: measured {record['measured']!r}, expected {record['expectation']}, "
                f"tolerance {json.dumps(record['tolerance'])}"
            )
    return "\n".join(lines)


def _worker(chapter: Chapter, options: RunOptions) -> dict:
    return execute_chapter(chapter, options)


def run_chapters(chapters: list[Chapter], options: RunOptions) -> list[dict]:
    """Execute ``chapters`` (in parallel when ``options.jobs > 1``) and update the ledger after each.

    Every chapter is checked against the chapter contract before the first
    one executes, so a malformed chapter stops the run with nothing lost.
    """
    validate_options(options)
    for chapter in chapters:
        load_chapter(chapter)
    path = ledger_path(options.build_dir)
    results: list[dict] = []
    if options.jobs == 1 or len(chapters) == 1:
        for chapter in chapters:
            result = execute_chapter(chapter, options)
            record_chapter(path, result)
            results.append(result)
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(options.jobs, len(chapters)), mp_context=context) as pool:
        futures = {pool.submit(_worker, chapter, options): chapter for chapter in chapters}
        try:
            for future in as_completed(futures):
                chapter = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # a worker process that died; the others go on
                    result = {
                        "chapter": chapter.name, "source": str(chapter.path), "in_toc": chapter.in_toc,
                        "status": "error", "claims": [], "failed_claims": [], "cell_times": [], "footer": {},
                        "error": {"ename": type(error).__name__, "evalue": str(error), "cell_index": None,
                                  "exec_count": None, "cell_first_line": ""},
                        "profile": options.profile, "device": options.device, "seed": options.seed,
                        "jobs": options.jobs, "duration_s": 0.0, "executed": None,
                    }
                    log.error("%s", summarize_result(result))
                record_chapter(path, result)
                results.append(result)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    order = {chapter.name: index for index, chapter in enumerate(chapters)}
    return sorted(results, key=lambda result: order[result["chapter"]])


def options_as_dict(options: RunOptions) -> dict:
    """Return the options as plain JSON-ready values."""
    data = asdict(options)
    data["root"] = str(options.root)
    data["build_dir"] = str(options.build_dir)
    return data
