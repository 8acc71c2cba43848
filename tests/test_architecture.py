"""The house rules, read from the source: apps import only downwards, no import circles, heavy ML
libraries only inside functions (the web process itself is checked in tests/modeling/test_web_process.py).

Layers, lowest first: projects < labeling < modeling < interchange < bench. `lightbulb_site` holds the
settings and the shared base (errors, atomic writes, the API's error handler) and imports no app,
except its composition root (urls, api_urls, wsgi), which wires every app together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["projects", "labeling", "modeling", "interchange", "bench"]
COMPOSITION_ROOT = {"lightbulb_site/urls.py", "lightbulb_site/api_urls.py", "lightbulb_site/wsgi.py"}
# A page of a lower app may show what an upper app knows (the project page embeds the model card);
# that is composition, not a dependency of the lower app's logic.
PAGE_COMPOSITION = {"views.py", "api.py", "admin.py"}
HEAVY = {"torch", "torchvision", "sentence_transformers", "spacy", "sklearn", "transformers"}


def source_files() -> list[Path]:
    files = []
    for package in [*LAYERS, "lightbulb_site"]:
        files += [p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, id(node) in top_level))
            # `from . import receivers` names modules too.
            found += [(f"{name}.{alias.name}", id(node) in top_level) for alias in node.names]
    return found


def layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def test_it_finds_the_apps():
    names = {module_name(p) for p in source_files()}
    assert {"projects.signals", "modeling.receivers", "interchange.importer", "bench.simulation",
            "modeling.ml.training", "modeling.inference.server"} <= names


def test_it_imports_only_downwards():
    wrong = []
    for path in source_files():
        rel = path.relative_to(REPO).as_posix()
        here = layer(module_name(path))
        for target, _ in imports(path):
            there = layer(target)
            if there is None:
                continue
            if here is None:  # lightbulb_site
                if rel not in COMPOSITION_ROOT:
                    wrong.append(f"{rel} imports {target}")
            elif there > here and path.name not in PAGE_COMPOSITION:
                wrong.append(f"{rel} imports {target} (above it)")
    assert wrong == []


def test_it_has_no_import_circle():
    ours = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = {}
    for name, path in ours.items():
        graph[name] = {t for t, _ in imports(path) if t in ours and t != name}
    # Tarjan's strongly connected components: any component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # A package's __init__ importing its own modules is not a circle worth naming.
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_it_imports_heavy_libraries_inside_functions_only():
    at_top = [
        f"{path.relative_to(REPO)} imports {target}"
        for path in source_files()
        for target, top_level in imports(path)
        if top_level and target.split(".")[0] in HEAVY
    ]
    assert at_top == []


@pytest.mark.parametrize("module", ["projects/encoders.py", "modeling/inference/protocol.py",
                                    "modeling/inference/client.py", "lightbulb_site/errors.py"])
def test_it_keeps_the_plain_modules_free_of_django(module):
    """The encoder catalogue, the inference client and the error base load without Django (bundles,
    the inference worker and the exported-model loader use them outside a Django process)."""
    assert [t for t, _ in imports(REPO / module) if t.split(".")[0] in {"django", "rest_framework"}] == []
