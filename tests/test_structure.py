"""The package's shape, checked: short functions, no import cycles, no private cross-module calls.

These are the rules ARCHITECTURE.md states; a change that breaks one fails here with the place
to look, instead of slowly eroding the structure.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mobilebert_kit"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


def _imported_modules(name: str, tree: ast.Module, known: set[str]) -> dict[str, set[str]]:
    """Package modules ``name`` imports (at any depth, lazy imports included) -> names taken from each."""
    out: dict[str, set[str]] = {}
    package = name if name in known and (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists() else None
    base = package or name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    out.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[: len(parts) - node.level + 1] + ([mod] if mod else []))
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in known:  # `from mobilebert_kit import engine`
                    out.setdefault(sub, set())
                elif mod in known:
                    out.setdefault(mod, set()).add(a.name)
    out.pop(name, None)
    return out


def _long_functions(trees: dict[str, ast.Module], sep: str) -> list[str]:
    """``<module><sep><function> (N lines, line L)`` for every function over a screen in ``trees``."""
    long = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}{sep}{node.name} ({n} lines, line {node.lineno})")
    return long


def test_no_function_is_longer_than_a_screen():
    long = _long_functions(_modules(), ".")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


def test_no_import_cycles():
    mods = _modules()
    known = set(mods)
    graph = {name: set(_imported_modules(name, tree, known)) for name, tree in mods.items()}
    # a package's __init__ importing its own submodules (a registry) is not a cycle
    for name in graph:
        graph[name] = {m for m in graph[name] if not (m.startswith(name + ".") or name.startswith(m + "."))}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_private_names_used_across_modules():
    mods = _modules()
    known = set(mods)
    found = []
    for name, tree in mods.items():
        for mod, names in _imported_modules(name, tree, known).items():
            found += [f"{name} imports {mod}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    if f"{node.module}.{a.name}" in known:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in known and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "private names used across modules: " + "; ".join(sorted(set(found)))


def test_the_structure_checks_can_fail(tmp_path, monkeypatch):
    """The checks above see what they claim to: a long function, a cycle and a private import."""
    global PACKAGE
    pkg = tmp_path / "mobilebert_kit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from mobilebert_kit.b import _hidden\n\ndef f():\n" + "    x = 1\n" * 90)
    (pkg / "b.py").write_text("def _hidden():\n    from mobilebert_kit import a\n")
    monkeypatch.setattr("test_structure.PACKAGE", pkg)
    for check, words in (
        (test_no_function_is_longer_than_a_screen, "mobilebert_kit.a.f"),
        (test_no_import_cycles, "mobilebert_kit.a -> mobilebert_kit.b -> mobilebert_kit.a"),
        (test_no_private_names_used_across_modules, "mobilebert_kit.a imports mobilebert_kit.b._hidden"),
    ):
        try:
            check()
        except AssertionError as e:
            assert words in str(e), str(e)
        else:
            raise AssertionError(f"{check.__name__} did not fail on a broken package")


# The floors ARCHITECTURE.md draws, lowest first: a module may import its own folder and any floor
# below its own, never a floor above (lazy imports inside functions included).
FLOORS = (
    (
        "ground",
        (
            "artifacts",
            "batching",
            "bounded_input",
            "config",
            "devices",
            "errors",
            "label_map",
            "locking",
            "metrics",
            "models",
            "paraphrase_l3",
            "runtimes",
            "strict_load",
        ),
    ),
    ("data", ("data",)),
    ("graph", ("graph",)),
    ("training", ("training",)),
    ("compression", ("compression",)),
    ("formats", ("formats",)),
    ("phone", ("phone",)),
    ("stages", ("stages",)),
    ("pipeline", ("pipeline",)),
    ("cli", ("cli",)),
)
# floors that stand side by side (neither imports the other)
SIDE_BY_SIDE = {("data", "graph")}


def _floor(module: str) -> tuple[int, str] | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != PACKAGE.name:
        return None
    top = parts[1]
    for rank, (floor, members) in enumerate(FLOORS):
        if top in members:
            return rank, floor
    return None


def _floor_violations() -> list[str]:
    mods = _modules()
    known = set(mods)
    bad = []
    for name, tree in mods.items():
        own = _floor(name)
        if own is None:
            continue
        for dep in _imported_modules(name, tree, known):
            theirs = _floor(dep)
            if theirs is None or theirs[1] == own[1]:
                continue
            side = (own[1], theirs[1]) in SIDE_BY_SIDE or (theirs[1], own[1]) in SIDE_BY_SIDE
            if theirs[0] > own[0] or side:
                bad.append(f"{name} ({own[1]}) imports {dep} ({theirs[1]})")
    return bad


def test_each_folder_imports_only_the_floors_below_it():
    bad = _floor_violations()
    assert not bad, "imports that go up a floor: " + "; ".join(sorted(bad))


def test_only_the_ground_floor_sits_flat_in_the_package():
    ground = set(FLOORS[0][1]) | {"__init__", "__main__"}
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ground)
    assert not flat, (
        f"modules flat at the top of the package outside the ground floor: {flat}; move each into its folder"
    )
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc, f"{folder.name}/__init__.py should say in a line or two what lives there"


BENCHMARKS = PACKAGE.parent / "benchmarks"


def _benchmark_trees() -> dict[str, ast.Module]:
    return {
        str(p.relative_to(BENCHMARKS)): ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        for p in sorted(BENCHMARKS.rglob("*.py"))
    }


def test_benchmarks_use_no_private_package_name():
    found = []
    for name, tree in _benchmark_trees().items():
        for node in ast.walk(tree):
            # the package, or one of its standalone workers put on sys.path (phone/resources/*.py)
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                found += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
                if any(part.startswith("_") for part in node.module.split(".")[1:]):
                    found.append(f"{name}: {node.module}")
    assert not found, "benchmarks importing private package names: " + "; ".join(found)


def test_benchmark_functions_fit_a_screen():
    long = _long_functions(_benchmark_trees(), ":")
    assert not long, f"benchmark functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


def test_benchmark_scripts_share_code_only_through_lib():
    """Scripts import benchmarks/lib and the package, never another script; the timing worker stays standalone
    (it runs under a side onnxruntime, so importing mobilebert_kit would load the host's first)."""
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")}
    found = []
    for name, tree in _benchmark_trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            found += [f"{name} imports {t}" for t in tops if t in scripts]
            if name == "lib/ort_timing_worker.py":
                found += [f"{name} imports {t}" for t in tops if t == "mobilebert_kit"]
    assert not found, "benchmarks sharing code outside lib/: " + "; ".join(found)
