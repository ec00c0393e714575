"""`siamese index build|add|remove|info|verify` and the query options for index types.

Through CliRunner.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from siamese.cli import app


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output, (
        result.stderr
    )


def test_index_lifecycle(tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path) -> None:
    images = Path(shutil.copytree(unseen_dataset, tmp_path / "images"))
    gallery = tmp_path / "g"
    result = invoke(
        "index",
        "build",
        images,
        "--model",
        tiny_model_path,
        "--out",
        gallery,
        "--index",
        "HNSW32",
        "--json",
    )
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    assert (
        built["index_type"] == "HNSW32"
        and built["recall"]["at10"] > 0.9
        and "efSearch" in built["search_params"]
    )

    result = invoke("index", "build", images, "-m", tiny_model_path, "-o", gallery)
    assert (
        result.exit_code == 0 and "embedded 0" in result.stdout and "unchanged 24" in result.stdout
    )

    extra = tmp_path / "extra.png"
    shutil.copy(next((images / "id_001").iterdir()), extra)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = invoke(
        "index", "add", gallery, extra, tmp_path / "bad.png", "--identity", "newcomer", "--json"
    )
    assert result.exit_code == 3, result.output
    added = json.loads(result.stdout)
    assert (
        added["added"] == 1
        and added["count"] == 25
        and added["failures"][0]["path"].endswith("bad.png")
    )
    assert json.loads((gallery / "rejected.json").read_text())["rejected_count"] == 1

    result = invoke("index", "info", gallery, "--json")
    info = json.loads(result.stdout)
    assert (
        result.exit_code == 0
        and info["count"] == 25
        and info["identity_counts"]["newcomer"] == 1
        and info["staged"] == 0
    )

    result = invoke(
        "query", extra, "--gallery", gallery, "--ef-search", "64", "--mmap", "--json", "-k", "1"
    )
    assert (
        result.exit_code == 0
        and json.loads(result.stdout)["results"][0]["identities"][0]["distance"] < 1e-3
    )
    one_line_error(
        invoke("query", extra, "--gallery", gallery, "--nprobe", "4"), "nprobe does not apply"
    )

    result = invoke(
        "index", "remove", gallery, "--identity", "newcomer", "--path", images / "id_003"
    )
    assert result.exit_code == 0 and "removed 7" in result.stdout
    one_line_error(
        invoke("index", "remove", gallery, "--identity", "nobody"),
        "no items match identity 'nobody'",
    )

    result = invoke("index", "verify", gallery)
    assert result.exit_code == 0 and ": ok" in result.stdout
    (images / "id_000" / min(p.name for p in (images / "id_000").iterdir())).write_bytes(b"changed")
    result = invoke("index", "verify", gallery, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["files_changed"] == 1 and not report["ok"]
    assert invoke("index", "verify", gallery, "--no-files").exit_code == 0


def test_index_choice_and_refusals(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    result = invoke(
        "index",
        "build",
        unseen_dataset,
        "-m",
        tiny_model_path,
        "-o",
        tmp_path / "auto",
        "--index",
        "auto",
        "--max-memory",
        "1G",
    )
    assert (
        result.exit_code == 0
        and "index auto: Flat" in result.stdout
        and "expected recall@10" in result.stdout
    )
    one_line_error(
        invoke(
            "index",
            "build",
            unseen_dataset,
            "-m",
            tiny_model_path,
            "-o",
            tmp_path / "pq",
            "--index",
            "IVF4,PQ4",
        ),
        "needs at least 256 vectors",
    )
    assert not (tmp_path / "pq").exists()
    result = invoke(
        "index",
        "build",
        unseen_dataset,
        "-m",
        tiny_model_path,
        "-o",
        tmp_path / "sq",
        "--index",
        "IVF2,SQ4",
        "--min-recall",
        "1.0",
    )
    one_line_error(result, "below the minimum asked for (--min-recall 1.0)")
    one_line_error(
        invoke(
            "index",
            "build",
            unseen_dataset,
            "-m",
            tiny_model_path,
            "-o",
            tmp_path / "x",
            "--index",
            "Nonsense",
        ),
        "invalid index type 'Nonsense'",
    )
    one_line_error(
        invoke(
            "index",
            "build",
            unseen_dataset,
            "-m",
            tiny_model_path,
            "-o",
            tmp_path / "y",
            "--index",
            "auto",
            "--max-memory",
            "lots",
        ),
        "expected a number",
    )
    one_line_error(
        invoke("index", "add", tmp_path / "nowhere", unseen_dataset), "gallery folder not found"
    )


def test_target_recall_sets_how_far_the_search_parameter_is_tuned(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    built = {}
    for target in ("0.3", "1.0"):
        result = invoke(
            "index", "build", unseen_dataset, "-m", tiny_model_path, "-o", tmp_path / target,
            "--index", "IVF4,Flat", "--target-recall", target, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        built[target] = json.loads(result.stdout)
    low, high = built["0.3"], built["1.0"]
    # 0.3 stops at the first rung that reaches it; 1.0 goes on to every list (exact search here).
    assert low["search_params"] == {"nprobe": 1} and low["recall"]["at10"] >= 0.3
    assert high["search_params"] == {"nprobe": 4} and high["recall"]["at10"] == 1.0
    refused = invoke(
        "index", "build", unseen_dataset, "-m", tiny_model_path, "-o", tmp_path / "bad",
        "--target-recall", "1.5",
    )  # fmt: skip
    assert refused.exit_code == 2 and "--target-recall" in refused.output
    assert not (tmp_path / "bad").exists()


def test_index_build_options_come_from_buildconfig() -> None:
    """Every BuildConfig field is an `index build` option (or its argument), shown in --help."""
    from dataclasses import fields

    from typer.testing import CliRunner

    from siamese.build_config import BuildConfig
    from siamese.cli import app
    from siamese.cli.fields import option_names

    shown = CliRunner().invoke(app, ["index", "build", "--help"], env={"COLUMNS": "160"}).output
    for name, names in option_names(BuildConfig).items():
        assert (name.upper() if name == "image_dir" else names[0]) in shown, names[0]
    assert set(option_names(BuildConfig)) == {f.name for f in fields(BuildConfig)}
    local = BuildConfig(image_dir="i", model="m", actors=2, address="auto")
    assert local.ray_only_given() == ["address", "actors"]
    assert BuildConfig(image_dir="i", model="m", engine="ray", actors=2).ray_only_given() == []
