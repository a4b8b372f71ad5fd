"""The package's layers read one way: types and math, then backends, then the loop and its policies,
then the entry points. Every import counts, lazy ones and ``TYPE_CHECKING`` ones too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "blendin"
# Each module's layer; a module imports only from its own layer or those below. A new module is placed
# here (the test says so), so the layers stay a fact of the code, not a reading of its imports.
LAYERS = {
    0: ["errors", "types", "blend", "placement", "config", "profile"],  # types and math
    1: ["backends", "vocab", "chunks", "models", "pair", "httpclient"],  # the models, local or on servers
    2: ["prompts", "policies", "mitigations", "sampling", "transcript", "repetition", "nudging", "driver", "speculative",
        "decoding", "scoring"],  # the loop and its policies
    3: ["", "__main__", "blender", "hf_generate", "parity", "cli", "cliargs", "scorecli", "demo", "jsonl", "progress", "testing",
        "eval", "server", "diagnostics"],  # entry points
}
LOOP = {f"blendin.{m}" for m in LAYERS[2]}
LOW = tuple(f"blendin.{m}" for layer in (0, 1) for m in LAYERS[layer])


def layer_of(module: str) -> int | None:
    """The layer of ``blendin.x.y``: that of its top-level name ``x`` (a package's modules share it)."""
    top = module.removeprefix("blendin").lstrip(".").split(".")[0]
    return next((n for n, names in LAYERS.items() if top in names), None)


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _reaches(graph, start: str, goal: str) -> list[str] | None:
    """A path of imports from ``start`` to ``goal``, or None."""
    seen, stack = {start}, [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == goal:
                return path + [goal]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_import_circles():
    graph = _graph()
    circles = []
    for name in sorted(graph):
        for dep in sorted(graph[name]):
            # a package's __init__ importing its own submodules is how re-exports work, not a circle
            if dep.startswith(name + ".") or name.startswith(dep + "."):
                continue
            back = _reaches(graph, dep, name)
            if back is not None and not any(b.startswith(name + ".") for b in back[:-1]):
                circles.append(" -> ".join([name, *back]))
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_backends_and_math_never_import_the_loop():
    graph = _graph()
    low = [n for n in graph if any(n == p or n.startswith(p + ".") for p in LOW)]
    bad = [f"{name} -> {dep}" for name in low for dep in graph[name] if dep in LOOP]
    assert not bad, "a lower layer imports the loop or a policy: " + ", ".join(bad)


def test_every_module_imports_only_its_layer_or_below():
    graph = _graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer (tests/test_layers.py, LAYERS): {unplaced}"
    upward = [f"{m} (layer {layer_of(m)}) -> {d} (layer {layer_of(d)})" for m in sorted(graph) for d in sorted(graph[m])
              if layer_of(d) > layer_of(m)]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)
