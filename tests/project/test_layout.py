"""The package's layers hold: no import circle, no import up a layer (tools/import_graph.py).

Every import counts, under TYPE_CHECKING and inside functions too. CI also runs
import-linter on the same layers (``lint-imports``, pyproject.toml); these
tests keep the two lists the same and show that the checker can fail.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support import REPO
from tools import import_graph


def test_rawbg_has_no_import_circle() -> None:
    assert import_graph.circles(import_graph.graph()) == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert list(import_graph.upward(import_graph.graph())) == []


def test_every_module_of_rawbg_is_in_a_layer() -> None:
    unplaced = [
        name
        for name in import_graph.modules()
        if name != "rawbg" and import_graph.layer_of(name) is None
    ]
    assert unplaced == []


def test_import_linters_layers_are_the_checkers_layers() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = config["contracts"]
    declared = [
        tuple(name.strip() for name in layer.replace("|", ":").split(":"))
        for layer in contract["layers"]
    ]
    assert declared == [tuple(layer) for layer in import_graph.LAYERS]


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "rawbg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_circle_made_of_a_type_checking_import(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "__init__.py": "",
            "tasks/__init__.py": "",
            "tasks/a.py": "from rawbg.tasks.b import B\n",
            "tasks/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from rawbg.tasks import a\n"
            ),
        },
    )
    assert import_graph.circles(import_graph.graph(tmp_path)) == [
        ["rawbg.tasks.a", "rawbg.tasks.b"]
    ]


def test_the_checker_finds_an_upward_import_hidden_in_a_function(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "__init__.py": "",
            "wire/__init__.py": "",
            "wire/protocol.py": "def f():\n    from ..server.server import Server\n",
            "server/__init__.py": "",
            "server/server.py": "",
        },
    )
    assert list(import_graph.upward(import_graph.graph(tmp_path))) == [
        "rawbg.wire.protocol imports rawbg.server.server, a higher layer"
    ]
