"""The command line's options: generated from the configs, same names across verbs, old names kept.

Nothing here trains or embeds: `train` is stopped where it would start training (the config it
built is captured), and the gallery verbs are parsed or pointed at a missing folder, so the file
runs in about a second.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.core import TyperOption
from typer.testing import CliRunner

from siamese.cli import app
from siamese.cli import train as cli
from siamese.cli.fields import option_names
from siamese.core.config_fields import choices_of
from siamese.core.errors import ConfigError
from siamese.training.config import TOWER_ALIASES, TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list:
    """The TrainConfig each `siamese train` invocation builds (training itself is skipped)."""
    built: list = []

    def capture(config, nproc: int, *, progress: bool) -> None:
        built.append((config, nproc))

    monkeypatch.setattr(cli, "_run_training", capture)
    return built


def train_config(configs: list, *args: str) -> TrainConfig:
    result = runner.invoke(app, ["train", "DATA", "--out", "runs/r1", *args])
    assert result.exit_code == 0, result.output
    return configs[-1][0]


def _command(*path: str) -> typer.core.TyperCommand:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def train_option_names() -> dict[str, set[str]]:
    """Every option `siamese train` accepts, hidden ones included, by the parameter they set."""
    return {
        p.name: set(p.opts) | set(p.secondary_opts)
        for p in _command("train").params
        if isinstance(p, TyperOption)
    }


def test_every_field_is_an_option_and_every_option_a_field() -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    params = {p.name for p in _command("train").params} - {"help"}
    base = {name.split("__alias_")[0] for name in params}
    assert base - {"nproc", "as_json"} == fields  # the only CLI-only options
    declared = option_names(TrainConfig)
    accepted = set().union(*train_option_names().values())
    for field_name, names in declared.items():
        if field_name != "data_dir":  # the positional argument
            assert set(names) <= accepted, field_name


def test_defaults_and_choices_come_from_the_dataclass() -> None:
    hints = typing.get_type_hints(TrainConfig)
    by_name = {p.name: p for p in _command("train").params}
    for item in dataclasses.fields(TrainConfig):
        param = by_name[item.name]
        allowed = choices_of(hints[item.name])
        if allowed is not None:  # the parser offers exactly the dataclass's choices
            assert choices_of(param.type_descriptor.annotation) == allowed, item.name
        if item.default is dataclasses.MISSING:
            assert param.required, item.name
        elif item.name != "widths":  # written as text, checked below
            assert param.default == item.default, item.name
    assert by_name["widths"].default == "16,32,64,128"


def test_no_options_give_the_recipe(configs: list) -> None:
    assert train_config(configs) == TrainConfig(data_dir="DATA", out_dir="runs/r1")
    assert configs[-1][1] == 1


OLD_AND_NEW = [
    (["--k", "5"], ["--images-per-identity", "5"]),
    (["--p", "3"], ["--identities-per-batch", "3"]),
    (["--size", "48"], ["--image-size", "48"]),
    (["--embedding-dim", "24"], ["--head-dim", "24"]),
    (["--tower", "seed"], ["--tower", "classic"]),
    (["-o", "runs/r2"], ["--out", "runs/r2"]),
]


@pytest.mark.parametrize(("old", "new"), OLD_AND_NEW)
def test_old_names_give_the_same_config(configs: list, old: list[str], new: list[str]) -> None:
    assert train_config(configs, *old) == train_config(configs, *new)
    assert train_config(configs, *old) != TrainConfig(data_dir="DATA", out_dir="runs/r1")


def test_old_names_are_hidden_from_help() -> None:
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output
    for name in ("--images-per-identity", "--identities-per-batch", "--image-size", "--head-dim"):
        assert name in text
    for old in ("--k ", "--p ", "--size ", "--embedding-dim"):
        assert old not in text


def test_an_option_and_its_alias_disagreeing_is_one_clear_error(configs: list) -> None:
    result = runner.invoke(
        app, ["train", "D", "--out", "r", "--k", "5", "--images-per-identity", "6"]
    )
    assert (
        result.exit_code == 1 and "--k is another name for --images-per-identity" in result.stderr
    )
    assert not configs


def test_closed_choices_are_refused_by_the_parser(configs: list) -> None:
    for option, value in [("--tower", "vgg"), ("--device", "tpu"), ("--schedule", "triangle")]:
        result = runner.invoke(app, ["train", "D", "--out", "r", option, value])
        assert result.exit_code == 2 and value in result.output, option
    assert not configs


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 64),
    p=st.integers(1, 64),
    size=st.integers(8, 512) | st.none(),
    tower=st.sampled_from(["seed", "classic", "conv", "resnet18"]),
    widths=st.lists(st.integers(1, 512), min_size=1, max_size=5),
)
def test_any_values_map_onto_the_same_fields(
    k: int, p: int, size: int | None, tower: str, widths: list[int]
) -> None:
    """Old and new spellings of random values build equal configs, and the values land unchanged."""
    built: list = []
    original = cli._run_training
    cli._run_training = lambda config, nproc, *, progress: built.append(config)
    try:
        text = ",".join(map(str, widths))
        sized = [] if size is None else ["--size", str(size)]
        old = ["--k", str(k), "--p", str(p), "--tower", tower, "--widths", text, *sized]
        resized = [] if size is None else ["--image-size", str(size)]
        new = ["--images-per-identity", str(k), "--identities-per-batch", str(p)]
        new += ["--tower", TOWER_ALIASES.get(tower, tower), "--widths", text, *resized]
        for args in (old, new):
            result = runner.invoke(app, ["train", "D", "--out", "r", *args])
            assert result.exit_code == 0, result.output
    finally:
        cli._run_training = original
    assert built[0] == built[1]
    assert (built[0].images_per_identity, built[0].identities_per_batch) == (k, p)
    assert built[0].image_size == size and built[0].widths == tuple(widths)


def test_old_run_configs_still_read() -> None:
    """config.json written before the renames: tower "seed", "embedding_dim" for the head."""
    old = {"data_dir": "d", "out_dir": "o", "tower": "seed", "embedding_dim": 5, "widths": None}
    config = TrainConfig.from_dict(old)
    assert config.tower == "classic" and config.head_dim == 5
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="tower must be one of"):
        TrainConfig(data_dir="d", out_dir="o", tower="vgg")


def _gallery_param(*path: str) -> list[str]:
    options = [p for p in _command(*path).params if isinstance(p, TyperOption)]
    return [name for p in options for name in p.opts if p.name and "gallery" in p.name]


@pytest.mark.parametrize(
    "verb",
    [
        ("index", "build"),
        ("index", "add"),
        ("index", "remove"),
        ("index", "info"),
        ("index", "verify"),
        ("index", "threshold"),
        ("query",),
        ("serve",),
    ],
)
def test_every_gallery_verb_takes_gallery(verb: tuple[str, ...]) -> None:
    assert "--gallery" in _gallery_param(*verb) and "-g" in _gallery_param(*verb)


def test_device_is_a_closed_choice_and_json_is_offered_everywhere() -> None:
    group = typer.main.get_command(app)
    verbs = [(n,) for n in group.commands if n != "index"]  # type: ignore[attr-defined]
    verbs += [("index", n) for n in _command("index").commands]  # type: ignore[attr-defined]
    for verb in verbs:
        params = {p.name: p for p in _command(*verb).params}
        if "device" in params:
            kind = params["device"].type_descriptor.annotation
            assert choices_of(kind) or issubclass(kind, enum.Enum), verb
        if verb != ("serve",):  # serve prints no result: it serves
            assert "--json" in params["as_json"].opts, verb
    topk = [p for p in _command("query").params if "-k" in getattr(p, "opts", [])]
    assert len(topk) == 1 and topk[0].name == "k"
    assert not any("-k" in p.opts for p in _command("train").params if isinstance(p, TyperOption))


@pytest.mark.parametrize(
    "args",
    [
        ["index", "info", "{g}"],
        ["index", "info", "--gallery", "{g}"],
        ["index", "verify", "{g}"],
        ["index", "verify", "--gallery", "{g}"],
        ["index", "remove", "{g}", "--identity", "x"],
        ["index", "remove", "--gallery", "{g}", "--identity", "x"],
        ["index", "threshold", "{g}", "0.5"],
        ["index", "threshold", "--gallery", "{g}", "0.5"],
        ["index", "threshold", "{g}", "--clear"],
        ["index", "add", "{g}", "a.png"],
        ["index", "add", "--gallery", "{g}", "a.png"],
        ["index", "build", "imgs", "--model", "m.onnx", "--out", "{g}"],
        ["index", "build", "imgs", "--model", "m.onnx", "--gallery", "{g}"],
        ["info", "{g}"],
    ],
)
def test_both_gallery_forms_reach_the_same_gallery(tmp_path: Path, args: list[str]) -> None:
    """Old and new forms name the same gallery: each fails on it as missing, in one line."""
    (tmp_path / "m.onnx").write_bytes(b"")
    gallery = tmp_path / "missing-gallery"
    filled = [a.replace("{g}", str(gallery)) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    if args[:2] != ["index", "build"]:  # build fails on the model or the images first
        assert str(gallery) in result.stderr or "no such file" in result.stderr


def test_gallery_given_twice_or_not_at_all_is_a_usage_error(tmp_path: Path) -> None:
    two = runner.invoke(app, ["index", "info", str(tmp_path / "a"), "--gallery", str(tmp_path)])
    none = runner.invoke(app, ["index", "verify"])
    not_a_distance = runner.invoke(app, ["index", "threshold", "--gallery", "g", "far"])
    for result in (two, none, not_a_distance):
        assert result.exit_code == 2 and "--gallery" in result.output, result.output


def _accepted(*verb: str) -> set[str]:
    return {
        name
        for p in _command(*verb).params
        if isinstance(p, TyperOption)
        for name in (*p.opts, *p.secondary_opts)
    }


def test_readme_command_lines_use_options_that_exist() -> None:
    """Every option the README's command block shows is accepted by its verb; new names shown."""
    page = README.parent / "docs" / "reference" / "cli.md"  # the synopsis moved from the README
    block = re.search(r"## At a glance\n\n```bash\n(.*?)```", page.read_text(), re.DOTALL)
    assert block is not None
    lines = block.group(1)
    assert "--out gallery/" not in lines and "--tower conv|classic" in lines
    for verb in ("add", "remove", "info", "verify", "threshold"):
        assert f"siamese index {verb} --gallery gallery/" in lines, verb
    checked = 0
    for line in re.findall(r"^(?:torchrun .*?-m )?siamese (.*)$", lines, re.MULTILINE):
        words = line.split()
        verb = tuple(words[:2]) if words[0] == "index" else (words[0],)
        for name in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split("#")[0]):
            assert name in _accepted(*verb), (verb, name)
            checked += 1
    assert checked > 40


def test_info_on_a_gallery_is_index_info(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One implementation: `siamese info DIR` is the `index info` command's function."""
    from siamese.cli import info

    calls: list = []
    monkeypatch.setattr(info, "index_info", lambda **kwargs: calls.append(kwargs))
    assert runner.invoke(app, ["info", str(tmp_path), "--json"]).exit_code == 0
    assert calls == [{"gallery_arg": tmp_path, "as_json": True}]


def test_threshold_distance_follows_either_gallery_form(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from siamese.core.errors import GalleryError
    from siamese.index import Gallery

    calls: list = []

    def record(gallery_dir: Path, distance: float | None, **options: object) -> None:
        calls.append((gallery_dir, distance))
        raise GalleryError("recorded")  # stop before printing

    monkeypatch.setattr(Gallery, "set_threshold", record)
    for args in (
        ["index", "threshold", str(tmp_path), "0.5"],
        ["index", "threshold", "--gallery", str(tmp_path), "0.5"],
        ["index", "threshold", "-g", str(tmp_path), "--clear"],
    ):
        assert runner.invoke(app, args).exit_code == 1
    assert calls == [(tmp_path, 0.5), (tmp_path, 0.5), (tmp_path, None)]


def test_add_takes_the_gallery_first_or_as_an_option(tmp_path: Path) -> None:
    from siamese.cli.index import _gallery_and_paths

    images = [tmp_path / "a.png", tmp_path / "more"]
    assert _gallery_and_paths(None, [tmp_path, *images]) == (tmp_path, images)
    assert _gallery_and_paths(tmp_path, images) == (tmp_path, images)
    assert _gallery_and_paths(tmp_path, [tmp_path, *images]) == (tmp_path, images)
    with pytest.raises(typer.BadParameter, match="images or folders"):
        _gallery_and_paths(tmp_path, [])


def test_train_help_groups_options_in_panels_without_python_types() -> None:
    from typer.testing import CliRunner

    from siamese.cli import app
    from siamese.training.config import TrainConfig

    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "160"}).output
    for panel in TrainConfig.PANELS:
        assert f"─ {panel} ─" in shown, panel
    generated = shown.split("─ Recipe and tower ─", 1)[1]  # the panels of TrainConfig's fields
    for python_type in ("<bool>", "<str>", "<int", "<float", "list[", "Path"):
        assert python_type not in generated, python_type
    grouped = {name for names in TrainConfig.PANELS.values() for name in names}
    from dataclasses import fields

    assert grouped | {"data_dir", "out_dir"} == {f.name for f in fields(TrainConfig)}


def test_help_lists_the_verbs_in_pipeline_order() -> None:
    """train → export → query → serve → eval → info → bench → demo (index, a group, last)."""
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "120"}).output
    commands = shown.split("Commands", 1)[1]
    order = ["train", "export", "query", "serve", "eval", "info", "bench", "demo", "index"]
    positions = [commands.index(f"│ {verb} ") for verb in order]
    assert positions == sorted(positions), positions


def _help(*verb: str) -> str:
    return runner.invoke(app, [*verb, "--help"], env={"COLUMNS": "160"}).output


#: Verbs whose options are generated from a config, with the config that groups them in panels.
CONFIGURED_VERBS = [
    (("train",), "siamese.training.config", "TrainConfig"),
    (("eval",), "siamese.evaluation.config", "EvalConfig"),
    (("serve",), "siamese.service.config", "ServiceConfig"),
    (("index", "build"), "siamese.build_config", "BuildConfig"),
    (("index", "add"), "siamese.add_config", "AddConfig"),
    (("demo",), "siamese.demos.options", "DemoOptions"),
]


@pytest.mark.parametrize(("verb", "module", "name"), CONFIGURED_VERBS)
def test_generated_options_come_in_panels_with_their_defaults(
    verb: tuple[str, ...], module: str, name: str
) -> None:
    import importlib

    config = getattr(importlib.import_module(module), name)
    shown = _help(*verb)
    fields = {f.name: f for f in dataclasses.fields(config)}
    params = {p.name for p in _command(*verb).params}
    assert set(fields) <= params, set(fields) - params  # every field is an option
    for panel, names in config.PANELS.items():
        assert f"─ {panel} ─" in shown, panel
        assert set(names) <= set(fields), set(names) - set(fields)
    for param in _command(*verb).params:  # a default that is a value is shown
        item = fields.get(param.name or "")
        if item is not None and item.default not in (dataclasses.MISSING, None, False, ()):
            assert param.show_default is not False, param.name
    assert "[default: " in shown


@pytest.mark.parametrize(
    "verb",
    [(n,) for n in typer.main.get_command(app).commands if n != "index"]  # type: ignore[attr-defined]
    + [("index", n) for n in _command("index").commands],  # type: ignore[attr-defined]
)
def test_help_names_values_in_words_not_python_types(verb: tuple[str, ...]) -> None:
    """PATH, N, X, TEXT or a choice list after an option; nothing after a flag."""
    shown = _help(*verb)
    for python_type in ("<bool>", "<str>", "<int", "<float", "list[", "<path>", "Path]"):
        assert python_type not in shown, (verb, python_type)


@pytest.fixture
def additions(monkeypatch: pytest.MonkeyPatch) -> list:
    """What each `siamese index add` asks of add_with_tower (the addition itself is skipped)."""
    from siamese import galleries
    from siamese.core.errors import GalleryError

    calls: list = []

    def capture(gallery_dir, paths, model, **options):  # type: ignore[no-untyped-def]
        calls.append((gallery_dir, paths, model, options))
        raise GalleryError("captured")  # stop before printing a report

    monkeypatch.setattr(galleries, "add_with_tower", capture)
    return calls


def test_index_add_options_map_onto_the_addition(additions: list, tmp_path: Path) -> None:
    from siamese.add_config import AddConfig

    a_png = tmp_path / "a.png"
    plain = runner.invoke(app, ["index", "add", "--gallery", str(tmp_path), str(a_png)])
    assert plain.exit_code == 1 and "captured" in plain.stderr
    given = ["--identity", "ann", "-m", "m.onnx", "--commit-every", "7", "--report", "r.json"]
    given += ["--device", "cpu", "--batch-size", "3", "--json"]
    old_form = runner.invoke(app, ["index", "add", str(tmp_path), str(a_png), *given])
    assert old_form.exit_code == 1, old_form.output
    (gallery, paths, model, defaults), (gallery2, paths2, model2, chosen) = additions
    assert gallery == gallery2 == tmp_path and paths == paths2 == [a_png]
    assert model is None and model2 == Path("m.onnx")
    assert {k: v for k, v in defaults.items() if k != "progress"} == AddConfig().add_options()
    assert chosen == {
        "device": "cpu",
        "batch_size": 3,
        "identity": "ann",
        "commit_every": 7,
        "report_path": Path("r.json"),
        "progress": False,
    }
    assert set(option_names(AddConfig)) == {f.name for f in dataclasses.fields(AddConfig)}


def test_demo_options_choose_the_demo_and_its_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    from siamese.demos import options, pair, pipeline

    ran: list = []

    def capture(config, **kwargs):  # type: ignore[no-untyped-def]
        ran.append(config)
        raise ConfigError("captured")

    monkeypatch.setattr(pipeline, "run_demo", capture)
    monkeypatch.setattr(pair, "run_pair_demo", capture)
    for args in ([], ["-o", "d", "--epochs", "2", "--seed", "3"], ["--pair", "--out", "p"]):
        assert runner.invoke(app, ["demo", *args]).exit_code == 1
    default, chosen, paired = ran
    assert default == pipeline.DemoConfig()
    assert (chosen.out_dir, chosen.epochs, chosen.seed) == ("d", 2, 3)
    assert paired == pair.PairDemoConfig(out_dir="p")
    assert options.DEMO_EPOCHS == pipeline.DemoConfig().epochs  # the help's defaults are true
    assert options.PAIR_DEMO_EPOCHS == pair.PairDemoConfig().epochs
