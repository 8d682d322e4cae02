"""The package's imports point one way, in the order data flows (AST, function-level included)."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "tmc_lightning"
STAGES = (
    "data",
    "models",
    "training",
    "inference",
    "evaluation",
    "reporting",
    "benchmarking",
    "export",
    "cli",
)
LATER_THAN_MODELS = STAGES[2:]  # training ... cli
# What each stage may not import (beyond "nobody imports cli", checked separately).
FORBIDDEN = {
    "data": (*LATER_THAN_MODELS, "models"),
    "models": (*LATER_THAN_MODELS, "data"),
    "inference": ("evaluation", "reporting", "benchmarking", "export"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in the file (inside functions too).

    Only ``if TYPE_CHECKING:`` blocks are left out: they never run.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names]  # "from pkg import module"
    return out


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}
GRAPH = {
    name: sorted({m for m in imports_of(path) if m in MODULES and m != name})
    for name, path in MODULES.items()
}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in STAGES else None


def test_the_walk_finds_the_package_and_its_edges():
    assert len(MODULES) > 50 and "tmc_lightning.training.module" in MODULES
    assert "tmc_lightning.models.registry" in GRAPH["tmc_lightning.models.tmc"]
    # a function-level import counts (the MONAI import inside hd95)
    assert "monai.metrics" in imports_of(MODULES["tmc_lightning.evaluation.per_image"])


def test_no_import_circles():
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_imports_follow_the_stage_order():
    bad = []
    for module, targets in GRAPH.items():
        stage = stage_of(module)
        for target in targets:
            tstage = stage_of(target)
            if tstage == "cli" and stage is not None and stage != "cli":
                bad.append(f"{module} -> {target} (no stage folder imports cli)")
            if stage in FORBIDDEN and tstage in FORBIDDEN[stage]:
                bad.append(f"{module} -> {target} ({stage} never imports {tstage})")
    assert not bad, "\n".join(bad)


# Top-level modules every stage may use: they import no stage folder (only each other).
SHARED = ("errors", "hub", "paths", "utils", "weights", "losses", "metrics")
ENTRY_POINTS = ("train", "evaluate", "predict", "explain")  # python -m tmc_lightning.<name>


def test_shared_modules_import_no_stage_and_entry_points_only_cli():
    bad = []
    for module, targets in GRAPH.items():
        short = module.removeprefix("tmc_lightning.")
        for target in targets:
            if short in SHARED and stage_of(target) is not None:
                bad.append(f"{module} -> {target} (shared modules import no stage)")
            if short in ENTRY_POINTS and stage_of(target) != "cli":
                bad.append(f"{module} -> {target} (entry points only call cli/)")
    top = {m.removeprefix("tmc_lightning.") for m in MODULES if m.count(".") == 1}
    assert top - {*STAGES} == {*SHARED, *ENTRY_POINTS}, top
    assert not bad, "\n".join(bad)


def test_the_registry_imports_no_model_file():
    assert GRAPH["tmc_lightning.models.registry"] == ["tmc_lightning.errors"]


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("lightning", ("tmc_lightning.data.datamodule", "tmc_lightning.training.")),
        ("hydra", ("tmc_lightning.cli.",)),
    ],
)
def test_only_their_stages_import_lightning_and_hydra(library, allowed):
    users = sorted(
        m
        for m, p in MODULES.items()
        if any(i == library or i.startswith(library + ".") for i in imports_of(p))
    )
    outside = [m for m in users if not any(m == a or m.startswith(a) for a in allowed)]
    assert users and not outside, f"{library} imported outside {allowed}: {outside}"


def test_every_stage_folder_says_what_it_does():
    for stage in STAGES:
        init = PKG / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()[0]) > 20, f"{init} needs a one-line docstring"


def test_files_stay_readable_whole():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 430}
    assert not long, f"files over ~400 lines: {long}"
