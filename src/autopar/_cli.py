"""The ``autopar`` command line: ``info``, ``demo`` and ``explain MODULE:FUNCTION ITEMS [--run] [--plot PATH]``.

Uses the public API only.  A bad module, function or ITEMS is a one-line
error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from typing import TYPE_CHECKING, Any

import autopar

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "parse_items"]


class _UsageError(Exception):
    """A user error on the command line: printed on one line, exit status 2."""


def parse_items(text: str) -> Any:
    """Parse ITEMS: a Python literal, or ``range(...)`` with literal integer arguments; never ``eval``.

    Raises:
        _UsageError: anything else.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        msg = f"ITEMS {text!r} is not a Python literal or range(...): {exc.msg}"
        raise _UsageError(msg) from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
        try:
            args = [ast.literal_eval(a) for a in node.args]
        except ValueError:
            args = []
        if 1 <= len(args) <= 3 and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            return range(*args)
        msg = f"ITEMS {text!r}: range() takes 1 to 3 integer literals"
        raise _UsageError(msg)
    try:
        value = ast.literal_eval(node)
    except ValueError:
        msg = f"ITEMS {text!r} is not a Python literal (list, tuple, ...) or range(...)"
        raise _UsageError(msg) from None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        msg = f"ITEMS {text!r} must be an iterable such as a list, a tuple or range(...), not {type(value).__name__}"
        raise _UsageError(msg)
    return value


def _load_function(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        msg = f"{spec!r} is not MODULE:FUNCTION (for example json:dumps)"
        raise _UsageError(msg)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        msg = f"cannot import module {module_name!r}: {exc}"
        raise _UsageError(msg) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            msg = f"module {module_name!r} has no attribute {attr!r}"
            raise _UsageError(msg)
        target = getattr(target, part)
    if not callable(target):
        msg = f"{spec!r} is not callable"
        raise _UsageError(msg)
    return target


def _info(_args: argparse.Namespace) -> int:
    from ._info import platform_report
    from ._limits import limit_rows

    rows = platform_report(autopar.probe_platform(memory=True)) + limit_rows()
    width = max(len(k) for k, _ in rows)
    print(f"autopar {autopar.__version__}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from ._demo import main as demo

    return demo()


def _explain(args: argparse.Namespace) -> int:
    func = _load_function(args.function)
    items = parse_items(args.items)
    options: dict[str, Any] = {}
    if args.strategy:
        options["strategy"] = args.strategy
    if args.run_call or args.plot:
        return _run_and_report(func, items, options, args)
    try:
        decision = autopar.explain(func, items, **options)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, default=str))
    else:
        print(decision)
    return 0


def _run_and_report(func: Any, items: Any, options: dict[str, Any], args: argparse.Namespace) -> int:
    """Run the call with ``report=True``; print its report and draw its timeline to ``--plot``."""
    if args.plot and not str(args.plot).lower().endswith((".png", ".svg", ".pdf")):
        msg = f"--plot {args.plot!r}: name a .png, .svg or .pdf file"
        raise _UsageError(msg)
    try:
        autopar.map(func, items, report=True, **options)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    report = autopar.last_report()
    assert report is not None
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report)
    if args.plot:
        try:
            report.plot(args.plot)
        except ModuleNotFoundError as exc:
            raise _UsageError(str(exc)) from None
        print(f"timeline written to {args.plot}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopar", description="Run functions in parallel, strategy chosen by measurement."
    )
    parser.add_argument("--version", action="version", version=f"autopar {autopar.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="what autopar knows about this platform").set_defaults(run=_info)
    sub.add_parser("demo", help="the GIL demo: serial, threads, processes and autopar").set_defaults(run=_demo)
    explain = sub.add_parser("explain", help="what autopar would do with MODULE:FUNCTION over ITEMS, and why")
    explain.add_argument("function", metavar="MODULE:FUNCTION")
    explain.add_argument("items", metavar="ITEMS", help="a Python literal or range(...)")
    explain.add_argument("--strategy", help="force a strategy instead of auto")
    explain.add_argument("--json", action="store_true", help="print the decision (or the report) as JSON")
    explain.add_argument(
        "--run", dest="run_call", action="store_true", help="run the call and print its report (report=True)"
    )
    explain.add_argument("--plot", metavar="PATH", help="run the call and draw its timeline to PATH (.png or .svg)")
    explain.set_defaults(run=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autopar`` console script and ``python -m autopar``."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except _UsageError as exc:
        print(f"autopar: error: {exc}", file=sys.stderr)
        return 2
    return status
