"""Layers point down only: app/ -> pipelines/ -> components/ -> src/packwise.

Every module of a layer is parsed (never imported, so this test needs no kfp) and each import is checked,
including the lazy ones inside functions, those under `if TYPE_CHECKING:` and `importlib.import_module`
calls with a literal name: src/packwise is the runtime and must stay installable and testable without
kfp or the layers built on it.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> what its modules must never import (a module, or anything under it)
KFP = r"kfp(_\w+)?"  # kfp and its sibling distributions: kfp_server_api, kfp_pipeline_spec, ...
LAYERS: dict[str, re.Pattern[str]] = {
    "src/packwise": re.compile(rf"({KFP}|packwise_components|packwise_pipelines|packwise_app)(\..*)?"),
    "components": re.compile(r"(packwise_pipelines|packwise_app)(\..*)?"),
    "pipelines": re.compile(r"packwise_app(\..*)?"),
}


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import anywhere in `source`, at module level or not."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def layer_violations(folder: Path, forbidden: re.Pattern[str]) -> list[str]:
    """`path:line imports module` for each import under `folder` that `forbidden` matches in full."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path.read_text()):
            if forbidden.fullmatch(module):
                found.append(f"{path.relative_to(folder.parent).as_posix()}:{line} imports {module}")
    return found


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_a_layer_never_imports_the_layers_above_it(folder: str) -> None:
    assert (ROOT / folder / "__init__.py").exists(), f"{folder} has moved: update LAYERS"
    assert layer_violations(ROOT / folder, LAYERS[folder]) == []


# case -> (source, line of the import in it, module it imports)
PLANTED = {
    "module level": ("import kfp\n", 1, "kfp"),
    "from-import": ("from kfp import dsl\n", 1, "kfp"),
    "lazy, inside a function": ("def f() -> None:\n    from kfp.compiler import Compiler\n", 2, "kfp.compiler"),
    "a kfp sibling": ("def f() -> None:\n    import kfp_server_api.exceptions\n", 2, "kfp_server_api.exceptions"),
    "type checking only": (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from packwise_components.images import ImageSet\n",
        4,
        "packwise_components.images",
    ),
    "the pipelines": ("import packwise_pipelines.local as local\n", 1, "packwise_pipelines.local"),
    "the app": ("class C:\n    def m(self) -> None:\n        from packwise_app import cli\n", 3, "packwise_app"),
    "by name": ("import importlib\n\n\ndef f() -> None:\n    importlib.import_module('kfp.dsl')\n", 5, "kfp.dsl"),
}


@pytest.fixture(scope="module")
def src_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("src") / "packwise"
    shutil.copytree(ROOT / "src" / "packwise", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("case", list(PLANTED))
def test_the_guard_finds_an_import_planted_in_a_copy_of_src_packwise(src_copy: Path, case: str) -> None:
    source, line, module = PLANTED[case]
    planted = src_copy / "models" / "planted.py"
    planted.write_text('"""A runtime module that reaches up."""\n\n' + source)
    try:
        found = layer_violations(src_copy, LAYERS["src/packwise"])
    finally:
        planted.unlink()
    assert found == [f"packwise/models/planted.py:{line + 2} imports {module}"]


def test_the_guard_ignores_names_that_only_look_alike(tmp_path: Path) -> None:
    folder = tmp_path / "packwise"
    folder.mkdir()
    (folder / "lookalike.py").write_text(
        '"""Mentions kfp and packwise_pipelines in text only."""\n'
        "import kfpx\n"
        "from packwise.models import get_model_type\n"
        "from . import packwise_app\n"
        "KFP = 'import kfp'\n"
    )
    assert layer_violations(folder, LAYERS["src/packwise"]) == []
