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
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,build,claims}")

    run = commands.add_parser("run", help="execute chapters with papermill and record their claims")
    run.add_argument("chapters", nargs="*", metavar="CHAPTER",
                     help="chapter names from _toc.yml, or paths to chapter .md files (default: every chapter)")
    run.add_argument("--profile", default="quick", choices=PROFILES,
                     help="quick: CPU-sized runs that CI uses; full: the scale a GPU makes cheap (default: quick)")
    run.add_argument("--device", default="auto", choices=DEVICES,
                     help="torch device: auto picks CUDA when present (default: auto)")
    run.add_argument("--seed", type=_seed, default=0, help="seed for Python, NumPy and torch (default: 0)")
    run.add_argument("--jobs", type=_positive_int, default=1, help="chapters executed at once (default: 1)")
    run.add_argument("--cell-timeout", type=_positive_int, default=None,
                     help="seconds a single cell may run (default: 900 for quick, 3600 for full)")
    run.add_argument("--quiet", action="store_true", help="do not stream cell output to the terminal")
    _add_location(run)

    build = commands.add_parser("build", help="render _build/html from the executed notebooks")
    build.add_argument("--no-strict", action="store_true", help="let Sphinx warnings pass instead of failing")
    _add_location(build)

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
    options = RunOptions(root=root, build_dir=build_dir, profile=args.profile, device=args.device, seed=args.seed,
                         jobs=args.jobs, cell_timeout=timeout, log_output=not args.quiet)
    results = run_chapters(chapters, options)
    print("\nsummary:")
    for result in results:
        print(summarize_result(result))
    failed = [result["chapter"] for result in results if result["status"] != "passed"]
    if failed:
        print(f"\n{len(failed)} of {len(results)} chapters did not pass: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"\nall {len(results)} chapters passed; ledger: {ledger_path(build_dir)}")
    return EXIT_OK


def _build(args) -> int:
    from .book.pages import build_html

    root, build_dir = _locate(args)
    html_dir = build_html(root, build_dir, strict=not args.no_strict)
    print(f"book rendered to {html_dir}")
    return EXIT_OK


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
    handlers = {"run": _run, "build": _build, "claims": _claims}
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
