"""Stage errors name settings; the command line shows the flag of the verb that ran.

The stages (training, export, engine, index, evaluation, the service, the use cases) do not know
which command called them, so their messages mark the setting to change with ``named(field)``: a
library user reads ``out_dir``, ``siamese train`` prints ``--out``, ``siamese index build``
prints ``--gallery`` for the gallery folder. Nothing here trains or embeds: each error comes
before the work, so the file runs in a few seconds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from siamese.cli import app
from siamese.cli import train as cli_train
from siamese.cli.support import _other_verbs_flags, verb_flags
from siamese.core.errors import ConfigError, GalleryError, SiameseError, named

ROOT = Path(__file__).resolve().parents[1]
#: Everything below the command line: the stages, the use cases, evaluation, service, foundation.
STAGE_FOLDERS = ("training", "export", "engine", "index", "service", "siamese")
#: Keyword arguments that hold documentation for a reader of the option or the API, not messages.
DOC_KEYWORDS = {"help", "description", "summary"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w-])")
runner = CliRunner()


def _command(*path: str) -> typer.core.TyperCommand:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _all_flags(command: object) -> set[str]:
    """Every long option of every verb, hidden former names included."""
    found = {
        name
        for param in getattr(command, "params", [])
        for name in (*param.opts, *getattr(param, "secondary_opts", []))
        if name.startswith("--")
    }
    for sub in getattr(command, "commands", {}).values():
        found |= _all_flags(sub)
    return found


def _stage_sources() -> list[Path]:
    files = [path for folder in STAGE_FOLDERS for path in (ROOT / folder).rglob("*.py")]
    return [path for path in files if "siamese/cli" not in path.as_posix()]


def _documentation_nodes(tree: ast.AST) -> set[int]:
    """Docstrings, help texts and option names (``setting(...)``): written for the CLI's help."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            own = DOC_KEYWORDS | ({"names", "aliases"} if name == "setting" else set())
            docs = [k.value for k in node.keywords if k.arg in own]
            if name == "setting" and len(node.args) > 1:  # setting(default, help)
                docs.append(node.args[1])
            skip |= {id(inner) for doc in docs for inner in ast.walk(doc)}
    return skip


def test_no_stage_message_names_a_flag() -> None:
    """Below the CLI, text that reaches a user names settings (named), never a `--flag`."""
    flags = _all_flags(typer.main.get_command(app))
    found = []
    for path in _stage_sources():
        tree = ast.parse(path.read_text(), str(path))
        skip = _documentation_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in skip:
                    continue
                named_flags = [t for t in FLAG.findall(node.value) if t in flags]
                if named_flags:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.append((where, named_flags, node.value[:60]))
    assert not found, found


def _named_settings() -> dict[str, str]:
    """Every setting a stage message names with ``named("…")``, and one place it does."""
    names = {}
    for path in _stage_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "named"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names[node.args[0].value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return names


def _verbs(command: object) -> list[object]:
    subs = getattr(command, "commands", {}).values()
    return [v for sub in subs for v in _verbs(sub)] if subs else [command]


def test_every_named_setting_is_an_option_or_argument_of_some_verb() -> None:
    """So the command line always has a flag (or an argument's name) to print in its place."""
    names = _named_settings()
    assert {"out_dir", "resume", "gallery_dir", "sampler", "pretrained", "fars"} <= set(names)
    spelled: set[str] = set()
    for verb in _verbs(typer.main.get_command(app)):
        spelled |= set(verb_flags(SimpleNamespace(command=verb)))
    missing = {name: where for name, where in names.items() if name not in spelled}
    assert not missing, missing


@pytest.mark.parametrize(
    ("verb", "setting", "flag"),
    [
        (("train",), "out_dir", "--out"),
        (("train",), "resume", "--resume"),
        (("train",), "data_dir", "DATA_DIR"),
        (("eval",), "gallery_dir", "--gallery-images"),  # not its hidden former name --gallery
        (("eval",), "fars", "--far"),
        (("eval",), "out_dir", "--out"),
        (("serve",), "model", "--model"),  # the field is model_path; found by its flag
        (("serve",), "max_upload_bytes", "--max-upload-mb"),
        (("query",), "gallery_dir", "--gallery"),
        (("index", "build"), "gallery_dir", "--gallery"),
        (("index", "build"), "index", "--index"),
        (("index", "add"), "model", "--model"),
        (("index", "remove"), "identities", "--identity"),
        (("export",), "calibration", "--calibration"),
        (("demo",), "out_dir", "--out"),
    ],
)
def test_each_verb_spells_a_setting_as_its_own_flag(
    verb: tuple[str, ...], setting: str, flag: str
) -> None:
    running = SimpleNamespace(command=_command(*verb))  # what verb_flags reads of a click context
    assert verb_flags(running)[setting] == flag


def test_a_library_user_reads_the_setting_names() -> None:
    from siamese.training.config import TrainConfig, parse_widths

    with pytest.raises(ConfigError) as caught:
        TrainConfig(data_dir="d", out_dir="o", instance_weight=0.5, sampler="random")
    assert caught.value.setting == "sampler" and "(sampler pk)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_widths("24;48")
    assert caught.value.settings == ("widths",)
    for error in (ConfigError(f"a ({named('out_dir')}) b {named('resume')}"), caught.value):
        text = f"{error} {error!r} {error.args}"
        assert "--" not in text and not re.search("[\ue000-\uf8ff]", text), text
    error = ConfigError(f"choose another run folder ({named('out_dir')})")
    assert error.worded(lambda name: name.upper()) == "choose another run folder (OUT_DIR)"
    assert SiameseError("no settings here").settings == ()


def test_a_settings_name_survives_pickling_and_wrapping() -> None:
    """Errors cross process boundaries (torchrun ranks); the CLI still finds the setting."""
    import pickle

    error = pickle.loads(pickle.dumps(GalleryError(f"x ({named('gallery_dir')})")))
    assert error.settings == ("gallery_dir",)
    wrapped = SiameseError(f"rank 1: {error.template}")
    assert wrapped.settings == ("gallery_dir",) and str(wrapped) == "rank 1: x (gallery_dir)"


def _one_line(result: object, expected: str) -> None:
    output = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert expected in output, output


def test_train_prints_its_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The run folder's refusal (training/setup.py) and a bad value (training/config.py)."""
    from siamese.training.checkpoint import CHECKPOINT_FILE
    from siamese.training.distributed import Ranks
    from siamese.training.setup import check_run_dir

    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    monkeypatch.setattr(
        cli_train,
        "_run_training",
        lambda config, nproc, *, progress: check_run_dir(config, Ranks()),
    )
    refused = runner.invoke(app, ["train", "D", "--out", str(tmp_path)])
    _one_line(refused, "resume it (--resume) or choose another run folder (--out)")
    widths = runner.invoke(app, ["train", "D", "-o", "r", "--widths", "24;48"])
    _one_line(widths, "the conv tower's widths (--widths) are comma-separated")
    instance = ["--instance-weight", "0.5", "--sampler", "random"]
    _one_line(runner.invoke(app, ["train", "D", "-o", "r", *instance]), "(--sampler pk)")


def test_index_verbs_print_their_flags(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["index", "remove", "--gallery", str(tmp_path)])
    _one_line(missing, "name what to remove: identities (--identity NAME) or paths (--path PATH)")
    (tmp_path / "m.onnx").write_bytes(b"")
    local = ["index", "build", "imgs", "-m", str(tmp_path / "m.onnx"), "-g", str(tmp_path / "g")]
    ray_only = runner.invoke(app, [*local, "--actors", "2", "--cpus-per-actor", "1"])
    assert ray_only.exit_code == 2 and "--actors, --cpus-per-actor need --engine ray" in (
        ray_only.output
    )


def test_eval_and_serve_print_their_flags(tmp_path: Path) -> None:
    """One setting, two verbs' spellings: the gallery images are --gallery-images under eval."""
    alone = runner.invoke(app, ["eval", "m.onnx", "--gallery", str(tmp_path)])  # hidden alias
    _one_line(
        alone,
        "give a data folder (DATA_DIR), or both gallery images (--gallery-images) and query "
        "images (--queries)",
    )
    _one_line(runner.invoke(app, ["eval", "m.onnx", "--far", "2"]), "rates (--far) lie between")
    served = runner.invoke(app, ["serve", "--gallery", str(tmp_path), "--max-upload-mb", "lots"])
    _one_line(served, "--max-upload-mb takes a number, got 'lots'")


def test_a_setting_of_another_verb_is_shown_as_that_verbs_flag() -> None:
    """A text tower offered where images are embedded: `--text` is `siamese query`'s."""
    spelled = _other_verbs_flags(typer.main.get_command(app))
    assert spelled["text"] == "--text" and spelled["query_data"] == "--query-data"
    assert "data_dir" not in spelled  # arguments are the running verb's own business
