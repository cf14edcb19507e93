"""The package's imports follow the data path: no circle, and no stage imports a later one.

Read with `ast` from the source (every import, also those inside functions and under
TYPE_CHECKING), so the test sees what a reader sees, whatever happens to be imported at run time.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stereocodec"

# Stages along the data path, earliest first; a module may import its own stage or earlier ones.
STAGES = (
    ("stereocodec.errors",),
    ("stereocodec.io", "stereocodec.metrics"),
    ("stereocodec.nn", "stereocodec.weights", "stereocodec.store"),
    ("stereocodec.coding",),
    ("stereocodec.container",),
    ("stereocodec.limits", "stereocodec.codec"),
    ("stereocodec.batch", "stereocodec.rate_control", "stereocodec.api"),  # the public API and the commands' tooling
    ("stereocodec.eval", "stereocodec.train"),  # comparing and training, on top of all that
    ("stereocodec.cli", "stereocodec.__main__"),
)
FACADE = "stereocodec"  # the package itself re-exports the public API: on top, with the CLI, and only by its exact name
BYTES_ONLY = "stereocodec.container"  # and everything it imports: no torch, no numpy


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level names of other packages) that `path` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import obj` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            (ours if target.split(".")[0] == "stereocodec" else theirs).add(target if target.startswith("stereocodec") else target.split(".")[0])
    return ours, theirs


def stage(name: str) -> int:
    """Index in STAGES of the longest prefix that names `name`'s stage."""
    if name == FACADE:
        return len(STAGES) - 1
    matches = [(len(prefix), i) for i, group in enumerate(STAGES) for prefix in group
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} belongs to no stage: add it to STAGES in {Path(__file__).name}"
    return max(matches)[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_stage_and_imports_only_real_modules(graph) -> None:
    for name, (ours, _) in graph.items():
        stage(name)
        assert ours <= set(graph), f"{name} imports {sorted(ours - set(graph))}, which do not exist"


def test_no_import_circle(graph) -> None:
    try:
        tuple(TopologicalSorter({name: ours - {name} for name, (ours, _) in graph.items()}).static_order())
    except CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_imports_point_only_down_the_data_path(graph) -> None:
    upward = [f"{name} (stage {stage(name)}) imports {target} (stage {stage(target)})"
              for name, (ours, _) in graph.items() for target in sorted(ours) if stage(target) > stage(name)]
    assert not upward, "\n".join(upward)


def test_container_is_bytes_only(graph) -> None:
    seen, todo = set(), [BYTES_ONLY]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name][0])
    heavy = {f"{name}: {lib}" for name in seen for lib in graph[name][1] & {"torch", "numpy", "PIL", "constriction"}}
    assert not heavy, sorted(heavy)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The walk itself works: a container that imported the CLI would be caught."""
    bad = tmp_path / "container.py"
    bad.write_text("import torch\nfrom .cli import main\n")
    ours, theirs = imports("stereocodec.container", bad, set(modules()))
    assert ours == {"stereocodec.cli"} and "torch" in theirs
    assert stage("stereocodec.cli") > stage("stereocodec.container")
