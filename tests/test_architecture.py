"""The package's layers (docs/architecture.md): imports run one way, and only the runners (and
the entry points) read a Hydra config."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gifemo"
DOC = PKG.parent / "docs" / "architecture.md"

# Bottom to top; a module imports from its own layer or the layers below it only.
LAYERS: list[tuple[str, ...]] = [
    ("emotions",),
    ("data",),
    ("backbones",),
    ("features",),
    ("models", "solvers"),
    ("eval",),
    ("finetune",),
    ("active",),
    ("runners",),
    ("apps",),
    ("bench",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def top_level(path: Path) -> str:
    return path.relative_to(PKG).with_suffix("").parts[0]


def gifemo_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``gifemo.*`` import in a file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gifemo.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "gifemo":
                out += [(node.lineno, f"gifemo.{a.name}") for a in node.names]
            elif node.module.startswith("gifemo."):
                out.append((node.lineno, node.module))
    return out


def modules() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if top_level(p) not in ("__init__", "__main__")]


def test_every_top_level_module_has_a_layer() -> None:
    tops = {top_level(p) for p in modules()}
    assert tops <= set(RANK), f"not in a layer (add it to docs/architecture.md): {tops - set(RANK)}"


def test_imports_run_one_way() -> None:
    upward = []
    for path in modules():
        mine = RANK[top_level(path)]
        for line, module in gifemo_imports(path):
            target = module.split(".")[1]
            if RANK.get(target, -1) > mine:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} imports {module}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checker_sees_function_level_and_package_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import os\nfrom gifemo import runners\n"
        "def f():\n    from gifemo.apps.predict import rank\n    import gifemo.eval.cv\n"
    )
    assert gifemo_imports(src) == [
        (2, "gifemo.runners"),
        (4, "gifemo.apps.predict"),
        (5, "gifemo.eval.cv"),
    ]


def test_only_runners_and_apps_read_hydra_configs() -> None:
    """Library layers take plain arguments: below the runners no module imports OmegaConf or
    Hydra's config machinery (``hydra.utils.instantiate`` of a saved ``_target_`` spec, a plain
    dict, is allowed: gifemo.active rebuilds a saved model's estimator that way)."""
    readers = []
    for path in modules():
        if RANK[top_level(path)] >= RANK["runners"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "omegaconf" or (
                    name.split(".")[0] == "hydra" and name != "hydra.utils"
                ):
                    readers.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {name}")
    assert not readers, readers


def test_architecture_doc_names_every_layer() -> None:
    text = DOC.read_text(encoding="utf-8")
    for names in LAYERS:
        for name in names:
            assert f"gifemo/{name}" in text, name
