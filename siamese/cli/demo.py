"""`siamese demo`: the whole pipeline on generated data, offline."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from siamese.cli.fields import config_from_options, with_config_options
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    out,
)
from siamese.cli.support import print_json as _print_json
from siamese.demos.options import DemoOptions


@_friendly_errors
@with_config_options(DemoOptions)
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    **fields: Any,
) -> None:
    options = config_from_options(DemoOptions, fields)
    if options.pair:
        _pair_demo(options.demo_config(), as_json)
        return
    from siamese.demos.pipeline import run_demo

    report = _run_demo(run_demo, options.demo_config(), as_json)
    if report is None:
        return
    from siamese.demos.summary import demo_summary

    out.print("\n" + demo_summary(report.to_dict()), highlight=False, markup=False)


def _run_demo(run: Any, config: Any, as_json: bool) -> Any:
    """Run a demo (progress lines unless JSON); None once its JSON report is printed."""
    report = run(
        config,
        progress=not as_json,
        log=(lambda _: None) if as_json else (lambda line: out.print(line, highlight=False)),
    )
    if as_json:
        _print_json(report.to_dict())
        return None
    return report


def _pair_demo(config: Any, as_json: bool) -> None:
    from siamese.demos.pair import run_pair_demo

    report = _run_demo(run_pair_demo, config, as_json)
    if report is None:
        return
    out.print(
        f"\n[bold]identification of {report.identities} identities never seen in training "
        "(gallery: their photos)[/bold]\n"
        f"  sketch → photo: top-1 {report.sketch_top1:.1%}, top-5 {report.sketch_top5:.1%} "
        f"({report.sketch_queries} sketches)\n"
        f"  text → photo:   top-1 {report.text_top1:.1%}, top-5 {report.text_top5:.1%} "
        f"({report.text_queries} captions)\n"
        f"  chance top-1:   {report.chance_top1:.1%}\n"
        f"pictures of text matches: {report.matches_png}\n"
        f"total time {report.seconds['total']:.0f}s; files in {report.out_dir}",
        highlight=False,
    )
