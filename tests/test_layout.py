"""The package follows the pipeline (DESIGN §2): a module imports its own stage, earlier stages
and the shared base, never a later stage — read from the source's imports, so a later change
cannot quietly break the rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "offer_ai"
#: The stages in pipeline order; the shared base (modules directly under offer_ai/) comes first.
STAGES = ("ingest", "features", "model", "online", "sim")
BASE = {"config", "cli", "spark", "lake", "errors", "run_lock", "faults"}
#: Old module paths kept for entry points that name them (python -m, staged SageMaker jobs).
SHIMS = {"local_dynamodb": "online", "sagemaker_entry": "model"}


def _rank(module: str) -> int:
    """0 for the base, 1 + the stage's index for a stage module."""
    parts = module.split(".")
    assert parts[0] == "offer_ai", module
    if len(parts) == 2 and parts[1] in BASE:
        return 0
    if len(parts) >= 2 and parts[1] in STAGES:
        return 1 + STAGES.index(parts[1])
    raise AssertionError(f"{module} is neither a base module nor in a stage")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imports(path: Path) -> set[str]:
    """Every offer_ai module the file imports, at any depth (function-level imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("offer_ai")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("offer_ai"):
            if node.module == "offer_ai":  # from offer_ai import lake, features
                names |= {f"offer_ai.{a.name}" for a in node.names}
            else:
                names.add(node.module)
    return names


def test_every_module_is_in_the_base_or_a_stage():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top <= BASE | set(SHIMS), f"modules outside any stage: {sorted(top - BASE - set(SHIMS))}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(STAGES)


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_module_never_imports_a_later_stage(module, path):
    name = module.split(".")[-1]
    if module.count(".") == 1 and name in SHIMS:
        assert _imports(path) == {f"offer_ai.{SHIMS[name]}.{name}"}, "a shim only forwards to its new home"
        return
    if module in ("offer_ai",) or module.count(".") == 1 and name in STAGES:
        rank = 0 if module == "offer_ai" else _rank(module)
    else:
        rank = _rank(module)
    later = sorted(i for i in _imports(path) if i != "offer_ai" and _rank(_target(i)) > rank)
    assert not later, f"{module} imports a later stage: {later}"


def _target(imported: str) -> str:
    """`offer_ai.features` (a stage package) ranks as its stage; a module as itself."""
    parts = imported.split(".")
    if len(parts) == 2 and parts[1] in STAGES:
        return f"{imported}.__init__"
    return imported


def test_the_rule_catches_a_later_import(tmp_path):
    """The checker itself: a features module importing online must be reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from offer_ai.online.items import encode_item\n")
    assert any(_rank(_target(i)) > _rank("offer_ai.features.bad") for i in _imports(bad))


def test_no_import_cycle_between_modules():
    graph = {module: {_target(i).removesuffix(".__init__") for i in _imports(path)} for module, path in _modules()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
