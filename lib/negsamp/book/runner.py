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
from .cache import cache_key, chapter_inputs, declared_data_files, stale_inputs
from .chapters import BookError, Chapter, chapter_budget, load_chapter
from .ledger import ledger_path, load_ledger, record_chapter, record_seed_run

log = logging.getLogger("negsamp")

FOOTER_MIME = "application/vnd.negsamp.run+json"
FOOTER_TAG = "negsamp-footer"
# Runs as the last cell of every chapter; it reports what the kernel imported
# and which versions it saw.  The "remove-cell" tag keeps it out of the book.
FOOTER_SOURCE = """\
import sys as _sys, json as _json, platform as _platform, resource as _resource
from IPython.display import display as _display
_usage = [_resource.getrusage(_who) for _who in (_resource.RUSAGE_SELF, _resource.RUSAGE_CHILDREN)]
_modules = {name: getattr(module, "__file__", None) for name, module in list(_sys.modules.items())
            if name == "negsamp" or name.startswith("negsamp.")}
_versions = {}
for _name in ("numpy", "scipy", "sympy", "torch", "sklearn", "matplotlib", "umap", "networkx", "pandas"):
    if _name in _sys.modules:
        _versions[_name] = getattr(_sys.modules[_name], "__version__", None)
_display({"text/plain": "run footer", "%s": _json.loads(_json.dumps({
    "python": _sys.version.split()[0], "executable": _sys.executable,
    "platform": _platform.platform(), "modules": _modules, "versions": _versions,
    "cpu_s": round(sum(_u.ru_utime + _u.ru_stime for _u in _usage), 3)}))}, raw=True)
""" % FOOTER_MIME


@dataclass(frozen=True)
class RunOptions:
    """How to run chapters: parameters, parallelism, limits and folders."""

    root: Path
    build_dir: Path
    profile: str = "quick"
    device: str = "auto"
    jobs: int = 1
    cell_timeout: int = 900
    log_output: bool = True
    seeds: tuple[int, ...] = (0,)
    force: bool = False
    budget_scale: float = 1.0


def validate_options(options: RunOptions) -> None:
    """Reject bad options before anything executes; raise :class:`BookError` naming the value."""
    try:
        validate_profile(options.profile)
        validate_device_name(options.device)
        if not options.seeds:
            raise ValueError("give at least one seed")
        for seed in options.seeds:
            validate_seed(seed)
        if len(set(options.seeds)) != len(options.seeds):
            raise ValueError(f"seeds must be distinct, got {list(options.seeds)}")
    except ValueError as error:
        raise BookError(str(error)) from None
    if not isinstance(options.jobs, int) or options.jobs < 1:
        raise BookError(f"--jobs must be a positive integer, got {options.jobs!r}")
    if not isinstance(options.cell_timeout, int) or options.cell_timeout < 1:
        raise BookError(f"--cell-timeout must be a positive number of seconds, got {options.cell_timeout!r}")
    if not options.budget_scale > 0:
        raise BookError(f"--budget-scale must be positive, got {options.budget_scale!r}")
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


def _error(ename: str, evalue: str) -> dict:
    return {"ename": ename, "evalue": evalue, "cell_index": None, "exec_count": None, "cell_first_line": ""}


def execute_chapter(chapter: Chapter, options: RunOptions, seed: int | None = None) -> dict:
    """Execute one chapter with one seed and return its ledger entry; never raises for chapter failures.

    The run for ``options.seeds[0]`` writes ``executed/NAME.ipynb`` (the
    notebook the book renders); other seeds write under ``executed/seeds/``.
    """
    import papermill

    seed = options.seeds[0] if seed is None else seed
    main_run = seed == options.seeds[0]
    build_dir = Path(options.build_dir)
    executed_dir = build_dir / "executed" if main_run else build_dir / "executed" / "seeds"
    executed_dir.mkdir(parents=True, exist_ok=True)
    stem = chapter.name if main_run else f"{chapter.name}.seed{seed}"
    prefix = stem if options.jobs > 1 else ""
    handlers = _configure_logging(prefix, build_dir / "logs" / f"{stem}.log")
    chapter_log = logging.getLogger("negsamp.chapter")
    input_path = executed_dir / f".{stem}.input.ipynb"
    partial_path = executed_dir / f".{stem}.partial.ipynb"
    output_path = executed_dir / f"{stem}.ipynb"
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    saved_environment = {key: os.environ.get(key) for key in (CHAPTER_ENV, JOBS_ENV, "JUPYTER_PATH",
                                                                 "PYDEVD_DISABLE_FILE_VALIDATION", "OMP_WAIT_POLICY")}
    error = None
    notebook = None
    try:
        notebook = _prepare_notebook(chapter)
        nbformat.write(notebook, input_path)
        os.environ[CHAPTER_ENV] = chapter.name
        os.environ[JOBS_ENV] = str(options.jobs)
        os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        # Idle OpenMP threads sleep instead of spinning. On a 2-core machine under other load, a
        # 2-thread chapter took 421 s wall and 94 s CPU with spinning and 38 s wall and 10 s CPU
        # without (torch 2.13 CPU build, 2026-12); a user's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        jupyter_path = str(_kernel_dir(build_dir))
        previous = saved_environment["JUPYTER_PATH"]
        os.environ["JUPYTER_PATH"] = jupyter_path + (os.pathsep + previous if previous else "")
        chapter_log.info("running chapter %s (profile %s, device %s, seed %d)",
                         chapter.name, options.profile, options.device, seed)
        papermill.execute_notebook(
            str(input_path),
            str(partial_path),
            parameters={"profile": options.profile, "device": options.device, "seed": seed},
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
        details = _error("DuplicateClaimId", f"claim ids recorded more than once: {', '.join(duplicated)}")
    checked = [record for record in claims if record["kind"] != "reported"]
    if details is None and chapter.in_toc and not checked:
        details = _error("NoClaims", "the chapter recorded no checked claims; every chapter must check its numbers")
    budget = chapter_budget(notebook, options.profile) if notebook is not None else None
    cpu_seconds = footer.get("cpu_s")
    if details is None and budget is not None and cpu_seconds is not None \
            and cpu_seconds > budget * options.budget_scale:
        details = _error(
            "OverBudget",
            f"the chapter's kernel used {cpu_seconds:.1f} s of CPU time ({duration:.1f} s wall-clock), over its "
            f"{options.profile}-profile budget of {budget * options.budget_scale:.0f} s (negsamp: budget_s in its "
            "front matter" + (f", scaled by {options.budget_scale:g}" if options.budget_scale != 1 else "") + ")",
        )
    failed_claims = [record for record in claims if not check_record(record) or not record.get("passed", False)]
    claim_failed = details is not None and details["ename"] in ("ClaimFailed", "OverBudget")
    if claim_failed or (details is None and failed_claims):
        status = "failed"
    elif details is not None:
        status = "error"
    else:
        status = "passed"
    parameters = {"profile": options.profile, "device": options.device, "seed": seed}
    inputs = {}
    if footer:
        data_files = declared_data_files(notebook, chapter.path) if notebook is not None else []
        inputs = chapter_inputs(chapter.path, options.root, footer.get("modules", {}), data_files)
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
        "seed": seed,
        "parameters": parameters,
        "inputs": inputs,
        "inputs_key": cache_key(inputs, {key: parameters[key] for key in ("profile", "device")}),
        "budget_s": budget,
        "jobs": options.jobs,
        "duration_s": round(duration, 3),
        "cpu_s": cpu_seconds,
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


def _worker(chapter: Chapter, options: RunOptions, seed: int) -> dict:
    return execute_chapter(chapter, options, seed)


def _crashed_result(chapter: Chapter, options: RunOptions, seed: int, error: BaseException) -> dict:
    return {
        "chapter": chapter.name, "source": str(chapter.path), "in_toc": chapter.in_toc,
        "status": "error", "claims": [], "failed_claims": [], "cell_times": [], "footer": {},
        "error": _error(type(error).__name__, str(error)), "inputs": {}, "inputs_key": None,
        "profile": options.profile, "device": options.device, "seed": seed,
        "parameters": {"profile": options.profile, "device": options.device, "seed": seed},
        "jobs": options.jobs, "duration_s": 0.0, "executed": None,
    }


def plan_tasks(chapters: list[Chapter], options: RunOptions, ledger: dict) -> tuple[list, list[str]]:
    """Return the (chapter, seed) runs that are due, and a line for each chapter that is up to date.

    A chapter's main run is due when :func:`stale_inputs` finds a reason;
    a further seed's run is due when the ledger has none for the current
    inputs.  ``options.force`` makes everything due.
    """
    tasks, skipped = [], []
    for chapter in chapters:
        main_seed = options.seeds[0]
        parameters = {"profile": options.profile, "device": options.device, "seed": main_seed}
        entry = ledger["chapters"].get(chapter.name)
        reasons = ["--force"] if options.force else stale_inputs(entry, options.root, chapter.path, parameters)
        if reasons:
            log.info("chapter %s will run: %s", chapter.name, "; ".join(reasons))
            tasks.append((chapter, main_seed))
        current_key = None if reasons else entry.get("inputs_key")
        runs = ledger.get("seed_runs", {}).get(chapter.name, {})
        due_seeds = [seed for seed in options.seeds[1:]
                     if options.force or current_key is None
                     or runs.get(str(seed), {}).get("inputs_key") != current_key
                     or runs.get(str(seed), {}).get("status") != "passed"]
        tasks.extend((chapter, seed) for seed in due_seeds)
        if not reasons and not due_seeds:
            skipped.append(f"chapter {chapter.name} is up to date (seed {main_seed}"
                           + (f" and {len(options.seeds) - 1} more seeds" if len(options.seeds) > 1 else "")
                           + "); not re-executed")
    return tasks, skipped


def _record(path: Path, result: dict, options: RunOptions) -> None:
    if result["seed"] == options.seeds[0]:
        record_chapter(path, result)
    else:
        record_seed_run(path, result)


def run_chapters(chapters: list[Chapter], options: RunOptions) -> list[dict]:
    """Execute the due runs of ``chapters`` (in parallel when ``options.jobs > 1``).

    Every chapter is checked against the chapter contract before the first
    one executes, so a malformed chapter stops the run with nothing lost.
    The ledger is rewritten atomically after each run, so an interrupted
    run keeps every run that finished.  Returns the results of the runs
    that executed, main seeds first in chapter order.
    """
    validate_options(options)
    for chapter in chapters:
        load_chapter(chapter)
    path = ledger_path(options.build_dir)
    tasks, skipped = plan_tasks(chapters, options, load_ledger(path))
    for line in skipped:
        log.info("%s", line)
    if options.profile == "full":
        _announce_full_profile_cost([chapter for chapter, seed in tasks if seed == options.seeds[0]], options)
    results: list[dict] = []
    if options.jobs == 1 or len(tasks) <= 1:
        for chapter, seed in tasks:
            result = execute_chapter(chapter, options, seed)
            _record(path, result, options)
            results.append(result)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(options.jobs, len(tasks)), mp_context=context) as pool:
            futures = {pool.submit(_worker, chapter, options, seed): (chapter, seed) for chapter, seed in tasks}
            try:
                for future in as_completed(futures):
                    chapter, seed = futures[future]
                    try:
                        result = future.result()
                    except Exception as error:  # a worker process that died; the others go on
                        result = _crashed_result(chapter, options, seed, error)
                        log.error("%s", summarize_result(result))
                    _record(path, result, options)
                    results.append(result)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    order = {chapter.name: index for index, chapter in enumerate(chapters)}
    return sorted(results, key=lambda result: (result["seed"] != options.seeds[0], order[result["chapter"]],
                                               result["seed"]))


def _announce_full_profile_cost(chapters: list[Chapter], options: RunOptions) -> None:
    """Log what the full profile is expected to cost, and warn when it will run on a CPU."""
    from ..repro import resolve_device

    device = resolve_device(options.device)
    total_gpu, total_cpu, unknown = 0.0, 0.0, []
    for chapter in chapters:
        meta = load_chapter(chapter).metadata.get("negsamp", {})
        gpu = meta.get("budget_s", {}).get("full")
        cpu = meta.get("full_cpu_s")
        total_gpu += float(gpu or 0)
        total_cpu += float(cpu or 0)
        if cpu is None:
            unknown.append(chapter.name)
    if device.type == "cpu":
        log.warning(
            "full profile on the CPU: the chapters estimate %.0f min in total here (%.0f min on a GPU)%s; "
            "it starts now, Ctrl-C keeps every chapter that finished",
            total_cpu / 60, total_gpu / 60,
            f"; no CPU estimate for {', '.join(unknown)}" if unknown else "",
        )
    else:
        log.info("full profile on %s: the chapters budget %.0f min in total", device, total_gpu / 60)


def options_as_dict(options: RunOptions) -> dict:
    """Return the options as plain JSON-ready values."""
    data = asdict(options)
    data["root"] = str(options.root)
    data["build_dir"] = str(options.build_dir)
    return data
