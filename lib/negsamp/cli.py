"""Command line: ``negsamp run | build | claims``.

Exit status: 0 when everything passed, 1 when a chapter or claim failed,
2 when the request itself was invalid (nothing was executed then).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .book.chapters import BookError, find_root, resolve_chapters, toc_chapters
from .book.ledger import all_claims, claim_status, ledger_path, load_ledger
from .claims import format_value
from .repro import DEVICES, PROFILES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed must lie in [0, 2**32), got {text!r}")
    return value


def _seed_list(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2, got {text!r}")
    seeds = tuple(_seed(part) for part in parts)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct, got {text!r}")
    return seeds


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="book folder holding _toc.yml (default: found from the current folder upwards)")
    parser.add_argument("--build-dir", type=Path, default=None,
                        help="folder for executed notebooks, the ledger and the HTML (default: ROOT/_build)")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``negsamp`` command."""
    parser = argparse.ArgumentParser(
        prog="negsamp",
        description="Execute the book's chapters, check their claims and render the book.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,build,claims,audit,diff}")

    run = commands.add_parser("run", help="execute chapters with papermill and record their claims")
    run.add_argument("chapters", nargs="*", metavar="CHAPTER",
                     help="chapter names from _toc.yml, or paths to chapter .md files (default: every chapter)")
    run.add_argument("--profile", default="quick", choices=PROFILES,
                     help="quick: CPU-sized runs that CI uses; full: the scale a GPU makes cheap (default: quick)")
    run.add_argument("--device", default="auto", choices=DEVICES,
                     help="torch device: auto picks CUDA when present (default: auto)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_seed, default=None, help="seed for Python, NumPy and torch (default: 0)")
    seeds.add_argument("--seeds", type=_seed_list, default=None, metavar="N,N,...",
                       help="run each chapter once per seed to measure each claim's spread; "
                            "the first seed's run is the one the book renders")
    run.add_argument("--jobs", type=_positive_int, default=1, help="chapters executed at once (default: 1)")
    run.add_argument("--cell-timeout", type=_positive_int, default=None,
                     help="seconds a single cell may run (default: 900 for quick, 3600 for full)")
    run.add_argument("--quiet", action="store_true", help="do not stream cell output to the terminal")
    run.add_argument("--force", action="store_true",
                     help="re-execute every chapter even if none of its inputs changed")
    run.add_argument("--budget-scale", type=_positive_float, default=1.0, metavar="X",
                     help="multiply every chapter's run-time budget by X, for slower machines (default: 1)")
    _add_location(run)

    build = commands.add_parser("build", help="render _build/html from the executed notebooks")
    build.add_argument("--no-strict", action="store_true", help="let Sphinx warnings pass instead of failing")
    build.add_argument("--force", action="store_true", help="render even if nothing changed since the last build")
    _add_location(build)

    audit = commands.add_parser("audit", help="show that every claim can fail and none is fragile across seeds")
    audit.add_argument("--json", action="store_true", help="one JSON result per claim")
    _add_location(audit)

    diff = commands.add_parser("diff", help="compare two ledgers: moved claims and run-time changes")
    diff.add_argument("old", type=Path, help="the earlier ledger (a claims.json file)")
    diff.add_argument("new", type=Path, help="the later ledger")
    diff.add_argument("--json", action="store_true", help="the comparison as one JSON object")

    claims = commands.add_parser("claims", help="print the claim ledger; exit 1 if any claim failed")
    claims.add_argument("--json", action="store_true", help="one JSON record per line instead of a table")
    claims.add_argument("--chapter", action="append", default=None, metavar="CHAPTER",
                        help="only this chapter (repeatable)")
    _add_location(claims)
    return parser


def _locate(args) -> tuple[Path, Path]:
    root = find_root(args.root) if args.root is None else Path(args.root).resolve()
    if not (root / "_toc.yml").is_file():
        raise BookError(f"--root {root} holds no _toc.yml")
    build_dir = Path(args.build_dir).resolve() if args.build_dir else root / "_build"
    return root, build_dir


def _run(args) -> int:
    from .book.runner import RunOptions, run_chapters, summarize_result

    root, build_dir = _locate(args)
    chapters = resolve_chapters(root, args.chapters)
    timeout = args.cell_timeout or (900 if args.profile == "quick" else 3600)
    seeds = args.seeds or ((args.seed,) if args.seed is not None else (0,))
    options = RunOptions(root=root, build_dir=build_dir, profile=args.profile, device=args.device, seeds=seeds,
                         jobs=args.jobs, cell_timeout=timeout, log_output=not args.quiet, force=args.force,
                         budget_scale=args.budget_scale)
    results = run_chapters(chapters, options)
    print("\nsummary:")
    for result in results:
        line = summarize_result(result)
        print(line if result["seed"] == seeds[0] else f"(seed {result['seed']}) {line}")
    failed = sorted({result["chapter"] for result in results if result["status"] != "passed"})
    ledger = load_ledger(ledger_path(build_dir))
    stale = [chapter.name for chapter in chapters
             if ledger["chapters"].get(chapter.name, {}).get("status") != "passed"]
    failed = sorted(set(failed) | set(stale))
    if failed:
        print(f"\n{len(failed)} of {len(chapters)} chapters did not pass: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"\nall {len(chapters)} chapters passed ({len(results)} runs executed, the rest up to date); "
          f"ledger: {ledger_path(build_dir)}")
    return EXIT_OK


def _build(args) -> int:
    from .book.pages import build_html

    root, build_dir = _locate(args)
    html_dir, rendered = build_html(root, build_dir, strict=not args.no_strict, force=args.force)
    print(f"book rendered to {html_dir}" if rendered else f"book in {html_dir} is up to date; nothing rendered")
    return EXIT_OK


def _audit(args) -> int:
    from .book.audit import audit_record, robustness

    root, build_dir = _locate(args)
    path = ledger_path(build_dir)
    if not path.exists():
        raise BookError(f"no ledger at {path}; run `negsamp run` first")
    ledger = load_ledger(path)
    order = [chapter.name for chapter in toc_chapters(root) if chapter.name in ledger["chapters"]]
    results = [audit_record(record) for record in all_claims(ledger, order)]
    fragile = []
    seeds_seen = 1
    for name in order:
        for claim_id, summary in robustness(ledger, name).items():
            seeds_seen = max(seeds_seen, len(summary["values"]))
            if summary["fragile"]:
                fragile.append((name, claim_id, summary))
    if args.json:
        for result in results:
            print(json.dumps(result, sort_keys=True))
    bad = [result for result in results if result["status"] in ("vacuous", "failing")]
    checked = [result for result in results if result["status"] != "reported"]
    for result in bad:
        print(f"{result['status'].upper()}: claim {result['id']} ({result['chapter']}): {result['detail']}")
    for name, claim_id, summary in fragile:
        values = ", ".join(format_value(value) for value in summary["values"])
        print(f"FRAGILE: claim {claim_id} ({name}): values over seeds {summary['seeds']}: {values}; "
              f"smallest margin {format_value(summary['min_margin'])} vs seed spread {format_value(summary['sd'])}")
    print(f"audit: {len(checked)} claims checked in {len(order)} chapters; "
          f"{len(checked) - len(bad)} can fail, {len(bad)} cannot or do not pass; "
          f"{len(fragile)} fragile across {seeds_seen} seed(s)")
    if seeds_seen < 2:
        print("audit: only one seed per chapter is recorded; run `negsamp run --seeds 0,1,2` to measure fragility")
    return EXIT_FAILED if bad or fragile else EXIT_OK


def _diff(args) -> int:
    from .book.diff import diff_ledgers, format_diff

    for path in (args.old, args.new):
        if not path.is_file():
            raise BookError(f"ledger {path} not found")
    result = diff_ledgers(load_ledger(args.old), load_ledger(args.new))
    print(json.dumps(result, indent=1, sort_keys=True) if args.json else format_diff(result))
    return EXIT_FAILED if result["failing"] else EXIT_OK


def _claims(args) -> int:
    root, build_dir = _locate(args)
    path = ledger_path(build_dir)
    if not path.exists():
        raise BookError(f"no ledger at {path}; run `negsamp run` first")
    ledger = load_ledger(path)
    order = [chapter.name for chapter in toc_chapters(root)]
    order += [name for name in ledger["chapters"] if name not in order]
    if args.chapter:
        unknown = [name for name in args.chapter if name not in ledger["chapters"]]
        if unknown:
            raise BookError(f"no ledger entry for {', '.join(unknown)}; recorded chapters: {', '.join(ledger['chapters'])}")
        order = args.chapter
    records = all_claims(ledger, order)
    failed_chapters = [name for name in order if name in ledger["chapters"] and ledger["chapters"][name]["status"] != "passed"]
    if args.json:
        for record in records:
            keep = {key: record.get(key) for key in ("chapter", "id", "statement", "source", "kind", "measured",
                                                     "expected", "tolerance", "profile", "seed", "device",
                                                     "library_version", "unit")}
            keep["status"] = claim_status(record)
            print(json.dumps(keep, sort_keys=True))
    else:
        width = max([len(record["id"]) for record in records] + [5])
        print(f"{'claim':<{width}}  {'status':<8}  {'measured':>12}  expected")
        for record in records:
            print(f"{record['id']:<{width}}  {claim_status(record):<8}  {record['formatted']:>12}  {record['expectation']}")
        for name in failed_chapters:
            error = ledger["chapters"][name].get("error") or {}
            print(f"chapter {name}: {ledger['chapters'][name]['status']}"
                  + (f" ({error.get('ename')}: {error.get('evalue')})" if error else ""))
    failed = [record for record in records if claim_status(record) == "failed"]
    return EXIT_FAILED if failed or failed_chapters else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the ``negsamp`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    handlers = {"run": _run, "build": _build, "claims": _claims, "audit": _audit, "diff": _diff}
    try:
        return handlers[args.command](args)
    except BookError as error:
        print(f"negsamp {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("negsamp: interrupted; the ledger keeps every chapter that finished", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
