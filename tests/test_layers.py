"""The layering as a contract: dags -> jobs -> stages -> lake, stages apart, no import cycles.

Every import statement of the packages is read with ``ast`` (imports inside functions included: a lazy
import is still a dependency), except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("featurization", "training", "evaluation", "scoring")
PACKAGES = ("lake", "sources", *STAGES, "jobs", "dags")
# Which of our packages each package may import. Training's per-epoch validation uses evaluation's metrics
# and negative sampler (one direction only; evaluation never imports training).
ALLOWED: dict[str, set[str]] = {
    "lake": set(),
    "sources": {"lake"},
    "featurization": {"lake"},
    "training": {"lake", "evaluation"},
    "evaluation": {"lake"},
    "scoring": {"lake"},
    "jobs": {"lake", "sources", *STAGES},
    "dags": set(),
}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def module_imports() -> dict[str, set[str]]:
    """``{module: the modules of our packages it imports}``, for every module of ``PACKAGES``."""
    out: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(), filename=str(path))
            skipped = _type_checking_lines(tree)
            found: set[str] = set()
            for node in ast.walk(tree):
                if getattr(node, "lineno", None) in skipped:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                found.update(name for name in names if name.split(".")[0] in PACKAGES)
            out[module] = found
    return out


def _known(name: str, modules: set[str]) -> str | None:
    """The module ``name`` refers to (``from a.b import c`` names ``a.b.c``, a function or a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_packages_import_only_the_layers_below_them():
    broken = []
    for module, imported in module_imports().items():
        package = module.split(".")[0]
        for name in imported:
            target = name.split(".")[0]
            if target != package and target not in ALLOWED[package]:
                broken.append(f"{module} imports {name}")
    assert not broken, "layering broken:\n" + "\n".join(sorted(broken))


def test_no_import_cycles():
    imports = module_imports()
    modules = set(imports)
    graph = {module: {_known(name, modules) for name in names} - {None, module} for module, names in imports.items()}
    # A package's __init__ re-exporting its own modules is not a cycle worth reporting.
    graph = {m: {t for t in targets if not (m.count(".") == 0 and t.startswith(f"{m}."))}
             for m, targets in graph.items()}
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_contract_sees_every_package(package):
    assert any(module.split(".")[0] == package for module in module_imports())
