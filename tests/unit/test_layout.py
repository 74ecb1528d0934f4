"""The layout rules, read from the source (ast): who may import whom, a purpose line atop every
module, no module over MAX_LINES without a reason in its docstring."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 350
SOURCES = sorted(p for folder in ("productsearch", "clients", "loadtest")
                 for p in (ROOT / folder).rglob("*.py")) + [ROOT / "build_models.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in SOURCES}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file, at any depth (lazy imports count)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def imported_modules(path: Path) -> set[str]:
    """Modules a file imports, `from pkg import mod` counted as pkg.mod."""
    out = set()
    for module, names in imports(path):
        out.add(module)
        out.update(f"{module}.{name}" for name in names)
    return out


def within(module: str, *rooms: str) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


ABOVE_THE_STUB = ("productsearch.control", "productsearch.training", "productsearch.demo", "productsearch.evaluation",
                  "productsearch.console", "clients", "loadtest", "build_models")
RULES = [  # (room, rooms it must never import, why)
    ("productsearch.core", ("productsearch.runtime", "productsearch.encoders", "productsearch.catalog", *ABOVE_THE_STUB),
     "core is the lowest room: limits and the fusion math, needed by every room above it"),
    ("productsearch.runtime", ABOVE_THE_STUB,
     "code inside Triton's python stub stays free of process control, training, the demo world and clients"),
    ("productsearch.encoders", ("productsearch.runtime", "productsearch.catalog", *ABOVE_THE_STUB),
     "the towers are loaded inside the stub and need only core"),
    ("productsearch.catalog", ("productsearch.runtime", "productsearch.encoders", *ABOVE_THE_STUB),
     "the catalog is read inside the stub and imports nothing above it"),
    ("productsearch.demo", ("productsearch.runtime", "productsearch.control", "productsearch.training",
                            "productsearch.evaluation", "productsearch.console", "clients", "loadtest"),
     "the demo world is data: it is generated, not served"),
    ("productsearch.evaluation", ("productsearch.runtime", "productsearch.encoders", "productsearch.catalog",
                                  "productsearch.control", "productsearch.training", "productsearch.console", "loadtest",
                                  "torch", "faiss", "transformers"),
     "evaluation is a user of the client: it measures the SERVED search over gRPC"),
    ("productsearch.control", ("productsearch.training", "productsearch.evaluation", "productsearch.console", "loadtest"),
     "running the service never needs training, evaluation or the console"),
    ("productsearch.console", ("productsearch.runtime", "productsearch.encoders", "productsearch.catalog",
                               "productsearch.control", "productsearch.training", "productsearch.demo", "loadtest",
                               "torch", "faiss", "transformers"),
     "the console is a client like any shop backend: it talks to the service only through clients/"),
    ("clients", ("productsearch", "loadtest", "build_models", "torch", "faiss", "transformers"),
     "the client package installs alone: tritonclient and numpy"),
]


@pytest.mark.parametrize("room, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_import_rules(room, forbidden, why):
    broken = [f"{module_name(p)} imports {m}" for p in SOURCES if within(module_name(p), room)
              for m in sorted(imported_modules(p)) if within(m, *forbidden)]
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_no_import_circles():
    """No module imports itself back through others (module-level and lazy imports alike)."""
    graph = {module_name(p): {m for m in imported_modules(p) if m in MODULES} for p in SOURCES}
    circles = set()
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    circles.add(" -> ".join(path + (start,)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + (nxt,)))
    assert not circles, "\n".join(sorted(circles))


def test_loadtest_uses_public_names_only():
    broken = [f"{module_name(p)}: {module}.{name}" for p in SOURCES if within(module_name(p), "loadtest")
              for module, names in imports(p) if within(module, "productsearch", "clients")
              for name in names if name.startswith("_")]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_is_for(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.strip().splitlines()[0].strip(), f"{path} has no purpose line"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_short(path):
    lines = len(path.read_text().splitlines())
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= MAX_LINES or "Longer than" in docstring, (
        f"{path.relative_to(ROOT)} has {lines} lines: split it, or say in its docstring why it is 'Longer than' {MAX_LINES}")


def test_model_entry_points_are_one_line_shims():
    for shim in (ROOT / "model_repository").glob("*/1/model.py"):
        code = [line for line in shim.read_text().splitlines() if line.strip() and not line.startswith('"""')]
        assert len(code) == 1 and code[0].startswith("from productsearch.runtime."), shim


def test_readme_layout_table_names_every_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 4)]
    rooms = [p for p in (ROOT / "productsearch").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    for folder in ["model_repository", "clients", "loadtest", "deploy", "tests", *(f"productsearch/{p.name}" for p in rooms)]:
        assert f"`{folder}/`" in layout, f"README Layout table lacks {folder}/"
    for mentioned in __import__("re").findall(r"`(productsearch/\w+)/`", layout):
        assert (ROOT / mentioned).is_dir(), f"README Layout names {mentioned}/, which does not exist"
