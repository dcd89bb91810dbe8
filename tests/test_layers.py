"""The layers of docs/architecture.md, checked: every import of a decodekit module, at the top of a file or
inside a function, goes to the same layer or a lower one."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "decodekit"

# From the bottom up, as docs/architecture.md's table lists them (its last row first), with the modules below
# every layer first.
LAYERS = [
    ("base", ("errors", "defaults", "text", "trace", "option_values", "files")),
    ("runtime", ("models",)),
    ("parts", ("drafting", "sampling", "constrain")),
    ("diffusion", ("diffusion",)),
    ("loops", ("speculative", "core")),
    ("quality", ("quality",)),
    ("session", ("session",)),
    ("methods", ("methods",)),
    ("measurement", ("bench",)),
    ("interfaces", ("cli", "serve", "api", "__main__", "__init__")),
]
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def top_of(module: str) -> str:
    """decodekit.bench.run -> bench; decodekit -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    return "decodekit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports(source: str, here: str, is_package: bool = False) -> list[str]:
    """The decodekit modules that the source of module `here` imports (relative imports resolved)."""
    package = here if is_package else here.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "decodekit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append(f"{base}.{node.module}" if node.module else base)
            elif node.module and node.module.split(".")[0] == "decodekit":
                found.append(node.module)
    return found


def upward_imports(source: str, here: str, is_package: bool = False) -> list[str]:
    mine = RANK[top_of(here)]
    return [m for m in imports(source, here, is_package) if top_of(m) in RANK and RANK[top_of(m)] > mine]


def test_every_module_belongs_to_a_layer():
    assert {top_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - set(RANK) == set()


def test_no_import_goes_to_a_higher_layer():
    upward = [f"{path.relative_to(PACKAGE)} imports {module}" for path in sorted(PACKAGE.rglob("*.py"))
              for module in upward_imports(path.read_text(encoding="utf-8"), module_name(path),
                                           path.name == "__init__.py")]
    assert upward == []


def test_the_walk_finds_upward_imports_anywhere_in_a_file():
    source = ("from decodekit.models.loaded import LoadedModel\n"
              "def late():\n    from ..cli.app import app\n    import decodekit.serve.bench\n"
              "from .run import run_suite\n")
    assert sorted(upward_imports(source, "decodekit.bench.fake")) == ["decodekit.cli.app", "decodekit.serve.bench"]
    assert upward_imports(source, "decodekit.cli.fake") == []
