"""`siamese bench`: run a benchmark suite of the checkout and record its JSON."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    out,
)
from siamese.cli.support import print_json as _print_json
from siamese.core.errors import SiameseError


@_friendly_errors
def bench(
    suite: Annotated[
        str,
        typer.Argument(
            help="Benchmark suite: a file benchmarks/SUITE.py (run `siamese bench list`)."
        ),
    ],
    quick: Annotated[bool, typer.Option(help="Small, fast configuration.")] = False,
    plot: Annotated[bool, typer.Option(help="Also write plots next to the JSON result.")] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-O", help="Suite option KEY=VALUE (repeatable)."),
    ] = None,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for generated inputs.")] = Path(
        ".bench-work"
    ),
    results_dir: Annotated[
        Path | None, typer.Option(help="Where the JSON goes (default: benchmarks/results).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole record as JSON.")
    ] = False,
) -> None:
    """Run a benchmark suite and record its figures (machine, versions, settings) as JSON."""
    harness = _bench_harness()
    if suite == "list":
        for name in harness.available_suites():
            out.print(name)
        return
    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SiameseError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = value
    settings = harness.BenchSettings(quick=quick, work_dir=work_dir, plot=plot, options=options)
    record, path = harness.run_suite(suite, settings, results_dir)
    if as_json:
        _print_json({**record, "path": str(path)})
    else:
        out.print(json.dumps(record["results"], indent=2), highlight=False)
        out.print(f"results written to [bold]{path}[/bold]")


def _bench_harness() -> ModuleType:
    """The benchmarks' harness, from a source checkout: benchmarks are not part of the package.

    Found through SIAMESE_BENCHMARKS, else as benchmarks/_harness.py in the working directory or
    one above it; the suites import it (and their helpers) by name from that folder.
    """
    here = Path.cwd()
    named = os.environ.get("SIAMESE_BENCHMARKS")
    candidates = [Path(named)] if named else []
    candidates += [folder / "benchmarks" for folder in (here, *here.parents)]
    for folder in candidates:
        if (folder / "_harness.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return importlib.import_module("_harness")
    raise SiameseError(
        "siamese bench runs the suites of a source checkout: run it inside the repository, "
        "or set SIAMESE_BENCHMARKS to its benchmarks/ folder"
    )
