"""The README's two set-up commands stay self-sufficient, and CI runs exactly them.

A newcomer runs the install command, then the test command; the second must work right after the
first. So whatever the tests import must come with the install command's extras, and `.ci/run`
must install and test the way the README says.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

# tomllib is in the standard library from Python 3.11; on 3.10 these checks are skipped.
tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI_RUN = (ROOT / ".ci" / "run").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The distributions that install the `onnxruntime` import package (the cpu and gpu extras).
RUNTIME_BUILDS = ("onnxruntime", "onnxruntime-gpu")


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)]


def _setup_commands() -> tuple[str, str]:
    """The first two bash blocks of the README: install-and-demo, then the test command."""
    install, test, *_ = _bash_blocks(README)
    return install, test


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _installed_extras(install_command: str) -> set[str]:
    match = re.search(r"pip install\b[^&;]*?-e \"\.\[([^\]]*)\]\"", install_command)
    assert match, f"the install command does not install the project with extras: {install_command}"
    return {extra.strip() for extra in match.group(1).split(",")}


def test_install_command_brings_the_test_extra_and_runs_the_demo() -> None:
    install, _ = _setup_commands()
    assert "test" in _installed_extras(install)
    assert install.rstrip().endswith("siamese demo")


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    install, test = _setup_commands()
    ci_lines = [line.strip() for line in CI_RUN.splitlines() if line.strip()]
    assert ci_lines[-1] == test, "the last line of .ci/run must be the README's test command"
    ci_install = next(line for line in ci_lines if line.startswith("pip install"))
    assert _installed_extras(ci_install) == _installed_extras(install)


def test_every_distribution_the_tests_import_is_installed_by_the_setup_command() -> None:
    install, _ = _setup_commands()
    declared = _declared(_installed_extras(install))
    providers = metadata.packages_distributions()
    local = {"siamese", "tests", "benchmarks", "conftest"}
    local |= {
        path.stem for folder in ("benchmarks", "tests") for path in (ROOT / folder).rglob("*.py")
    }
    missing: dict[str, str] = {}
    for test_file in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(test_file.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in local or top in sys.stdlib_module_names:
                    continue
                names = {name.lower().replace("_", "-") for name in providers.get(top, [top])}
                if top == "onnxruntime":  # either build provides it; this venv may hold the GPU one
                    names |= set(RUNTIME_BUILDS)
                # A module may come in through a declared package's own dependencies (e.g.
                # starlette through fastapi); what matters is that a declared one provides it.
                if not names & declared and not _required_by_declared(names, declared):
                    missing[top] = str(test_file.relative_to(ROOT))
    assert not missing, f"tests import packages the set-up command does not install: {missing}"


def _declared(extras: set[str]) -> set[str]:
    """Distributions of the base install and ``extras``, following ``siamese[x]`` references."""
    project = PYPROJECT["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in project["optional-dependencies"][extra]:
            name = _requirement_name(requirement)
            if name == "siamese":  # the project's own extras, e.g. siamese[cpu,train,ray]
                pending += re.findall(r"[\w-]+", requirement.split("[", 1)[1].split("]")[0])
            else:
                declared.add(name)
    return declared


def _required_by_declared(names: set[str], declared: set[str]) -> bool:
    """Whether one of `names` is a (transitive) requirement of a declared distribution."""
    seen: set[str] = set()
    queue = list(declared)
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        queue += [_requirement_name(r) for r in requirements if "extra ==" not in r]
    return bool(names & seen)
