"""The layering is a contract: import-linter checks pyproject's contracts on the installed layout.

The stages live in top-level folders mapped into `siamese` by pyproject's package-dir, which
static tools do not follow; so the test mirrors the installed layout into a temporary folder
(every package where Python finds it once installed) and lints that. Further tests make one
sideways import in the mirror and expect the contracts to fail, so they cannot pass vacuously.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

tomllib = pytest.importorskip("tomllib")  # standard library from Python 3.11

ROOT = Path(__file__).resolve().parents[1]


def _mirror_installed_layout(destination: Path) -> Path:
    """Copy every package's modules to where they land once installed; returns the mirror."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    for package in setuptools["packages"]:
        parent, _, last = package.rpartition(".")
        folder = mapping.get(package) or f"{mapping[parent]}/{last}"
        target = destination / package.replace(".", "/")
        target.mkdir(parents=True, exist_ok=True)
        for module in (ROOT / folder).glob("*.py"):
            shutil.copy(module, target / module.name)
    return destination


def _lint(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """import-linter's exit code for pyproject's contracts over the mirror (0: all kept)."""
    from importlinter.cli import lint_imports

    monkeypatch.syspath_prepend(str(mirror))
    monkeypatch.chdir(mirror)  # import-linter also looks in the working directory, first
    # An editable install finds `siamese` through its own finder, ahead of sys.path: set it aside.
    monkeypatch.setattr(
        sys, "meta_path", [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", "")]
    )
    for name in [m for m in sys.modules if m == "siamese" or m.startswith("siamese.")]:
        monkeypatch.delitem(sys.modules, name)  # the mirror's siamese, not the installed one
    return lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)


def test_every_package_is_mirrored(tmp_path: Path) -> None:
    mirror = _mirror_installed_layout(tmp_path)
    for stage in ("training", "export", "engine", "index", "service", "cli", "evaluation"):
        assert (mirror / "siamese" / stage / "__init__.py").is_file(), stage


def test_the_layers_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lint(_mirror_installed_layout(tmp_path), monkeypatch) == 0


@pytest.mark.parametrize(
    ("module", "sideways"),
    [
        ("engine/embedder.py", "import siamese.index.gallery"),  # siblings stay apart
        ("index/gallery.py", "import siamese.engine.embedder"),
        ("training/trainer.py", "import siamese.engine"),  # training never uses the engine
        ("export/onnx_export.py", "import siamese.index"),
        ("training/data.py", "import siamese.cli"),  # a stage never imports an application
        ("engine/runtime.py", "import torch"),  # the query path stays torch-free
        ("service/routes.py", "import torchvision"),
        ("siamese/core/errors.py", "import siamese.training"),  # the foundation: nothing above
        ("siamese/data/images.py", "import siamese.galleries"),
        ("index/store/manifest.py", "import siamese.index.updates.writer"),  # store stays below
        ("index/search/recall.py", "import siamese.index.published"),
    ],
)
def test_a_sideways_import_breaks_a_contract(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    sideways: str,
) -> None:
    mirror = _mirror_installed_layout(tmp_path)
    inside = module.removeprefix("siamese/")  # the foundation's folder is the package itself
    installed = mirror / "siamese" / inside
    installed.write_text(installed.read_text() + f"\n{sideways}\n")
    assert _lint(mirror, monkeypatch) != 0, f"{sideways} in {module} went unnoticed"
    importer = "siamese." + module.removeprefix("siamese/").removesuffix(".py").replace("/", ".")
    imported = sideways.split()[1]
    broken = capsys.readouterr().out.split("Broken contracts", 1)[-1]
    assert f"{importer} -> {imported}" in broken, broken  # this import, not another, broke it


def _package_modules(mirror: Path) -> dict[str, Any]:
    """Every module of the installed layout by dotted name, parsed."""
    import ast

    found = {}
    for path in (mirror / "siamese").rglob("*.py"):
        parts = path.relative_to(mirror).with_suffix("").parts
        name = ".".join(part for part in parts if part != "__init__")
        found[name] = ast.parse(path.read_text())
    return found


def _imports_of(tree: Any, modules: dict[str, Any]) -> set[str]:
    """Package modules a module imports anywhere in it (lazy imports inside functions too).

    ``from pkg import submodule`` counts as the submodule alone, not the package.
    """
    import ast

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs
            if len(subs) < len(node.names) and node.module in modules:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & set(modules)
    return found


def _first_cycle(mirror: Path) -> str | None:
    """The first import cycle among the mirror's modules, as text; None when there is none."""
    modules = _package_modules(mirror)
    arrows = {name: _imports_of(tree, modules) - {name} for name, tree in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> str | None:
        if name in path:
            return " -> ".join((*path[path.index(name) :], name))
        if name in done:
            return None
        for target in sorted(arrows[name]):
            found = visit(target, (*path, name))
            if found:
                return found
        done.add(name)
        return None

    return next((c for c in (visit(name, ()) for name in sorted(arrows)) if c), None)


def test_no_import_cycles_in_the_package(tmp_path: Path) -> None:
    """No two modules import each other, even through lazy imports: each reads on its own."""
    mirror = _mirror_installed_layout(tmp_path)
    assert _first_cycle(mirror) is None
    pair = mirror / "siamese" / "training" / "pair_trainer.py"  # the trainer imports it
    pair.write_text(pair.read_text() + "\n\ndef _later():\n    import siamese.training.trainer\n")
    assert "siamese.training.pair_trainer" in (_first_cycle(mirror) or "")
