"""The README's pair examples, run through the CLI (CliRunner) on a tiny generated dataset.

The commands are read from the README's pair section as written; ``train`` gets tiny sizes added
(a couple of short epochs), and the synthetic generator writes a small dataset, so the whole
story (train, export, index, query by sketch and by text, eval) runs in seconds per step.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_TRAINING = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "3",
    "--image-size",
    "32",
    "--widths",
    "8,16",
    "--head-dim",
    "8",
    "--identities-per-batch",
    "6",
    "--images-per-identity",
    "2",
    "--text-layers",
    "1",
    "--text-max-length",
    "16",
]


def _pair_commands() -> list[list[str]]:
    section = (README.parent / "docs" / "guide" / "pairs.md").read_text()  # moved from README
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)[:1]
    commands = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("siamese "):
            commands.append(shlex.split(line)[1:])
    return commands


@pytest.fixture(scope="module")
def pair_story(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run every README command in order in a fresh folder; keep each outcome."""
    import os

    from siamese.cli import app
    from siamese.demos.synthetic import PairSpec, generate_pair_identities

    root = tmp_path_factory.mktemp("readme-pairs")
    spec = PairSpec(
        identities=12, photos_per_identity=3, sketches_per_identity=2, photo_size=32, sketch_size=24
    )
    generate_pair_identities(root / "pairs", spec, seed=1)
    outcomes: dict[str, object] = {}
    before = Path.cwd()
    os.chdir(root)
    try:
        for args in _pair_commands():
            if args[0] == "train":
                args = [*args, *TINY_TRAINING]
            result = CliRunner().invoke(app, args, catch_exceptions=False)
            outcomes[" ".join(args)] = result
    finally:
        os.chdir(before)
    outcomes["root"] = root
    return outcomes


def test_the_readme_pair_section_has_the_whole_story() -> None:
    verbs = [args[0] if args[0] != "index" else "index " + args[1] for args in _pair_commands()]
    assert verbs == [
        "train",
        "train",
        "export",
        "export",
        "index build",
        "index build",
        "query",
        "query",
        "eval",
        "eval",
    ]


def test_every_readme_pair_command_succeeds(pair_story: dict[str, object]) -> None:
    failed = {
        command: (result.exit_code, result.output[-400:])
        for command, result in pair_story.items()
        if command != "root" and result.exit_code != 0
    }
    assert not failed, failed
    root = pair_story["root"]
    assert isinstance(root, Path)
    for name in ("sketch.query.onnx", "sketch.gallery.onnx", "text.query.onnx", "matches.png"):
        assert (root / name).is_file(), name


def test_sketch_query_json_names_identities(pair_story: dict[str, object]) -> None:
    (result,) = [r for c, r in pair_story.items() if c.startswith("query pairs/sketches")]
    answer = json.loads(result.output)
    assert answer["model"].endswith("sketch.query.onnx")
    assert len(answer["results"]) == 1 and answer["results"][0]["identities"]


def test_text_query_wrong_side_and_empty_text_are_one_line_errors(
    pair_story: dict[str, object],
) -> None:
    from siamese.cli import app

    root = pair_story["root"]
    assert isinstance(root, Path)
    cases = [
        (
            [
                "query",
                str(root / "pairs/photos/id_000/000.png"),
                "--gallery",
                str(root / "text-gallery"),
            ],
            "a text tower; query it with texts (--text)",
        ),
        (
            ["query", "--text", "a red disc", "--gallery", str(root / "sketch-gallery")],
            "embeds images, not text",
        ),
        (["query", "--text", "   ", "--gallery", str(root / "text-gallery")], "empty"),
        (
            [
                "query",
                "--text",
                "a red disc",
                "--gallery",
                str(root / "text-gallery"),
                "--model",
                str(root / "sketch.query.onnx"),
            ],
            "embeds images, not text",
        ),
        (
            [
                "query",
                str(root / "pairs/sketches/id_000/000.png"),
                "--gallery",
                str(root / "text-gallery"),
                "--model",
                str(root / "sketch.query.onnx"),
            ],
            "built with the gallery tower of pair",
        ),
    ]
    for args, problem in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert problem in result.output and "Traceback" not in result.output, result.output


def test_info_describes_each_tower_of_a_pair(pair_story: dict[str, object]) -> None:
    from siamese.cli import app

    root = pair_story["root"]
    assert isinstance(root, Path)
    facts = {}
    for name in ("text.query.onnx", "text.gallery.onnx"):
        result = CliRunner().invoke(app, ["info", str(root / name), "--json"])
        assert result.exit_code == 0, result.output
        facts[name] = json.loads(result.output)
    query, gallery = facts["text.query.onnx"], facts["text.gallery.onnx"]
    assert query["embeds"] == "text" and query["input"]["name"] == "input_ids"
    assert gallery["embeds"] == "image" and query["kind"] == gallery["kind"] == "model"
    assert query["pair"]["role"] == "query" and gallery["pair"]["role"] == "gallery"
    assert query["pair"]["fingerprint"] == gallery["pair"]["fingerprint"]
