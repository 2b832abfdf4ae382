"""The layout of the ``zenmon`` package: the library, its tools, and the imports between them.

Read from the source tree next to this file (``ast``, nothing is imported), plus one
check that importing the installed library loads none of its tools.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zenmon"
TOOLS = "zenmon.tools"
#: The command-line front door: it may import the tools, lazily (inside functions).
FRONT_DOOR = frozenset({"zenmon.cli", "zenmon.__main__"})
TOOL_WORDS = ("demo", "bench", "naive", "child")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package in the source tree (Python and Cython), by dotted name."""
    paths = sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")])
    return {module_name(p): p for p in paths}


CYTHON_IMPORT = re.compile(r"^(\s*)(?:from\s+(\.+[\w.]*|zenmon[\w.]*)\s+c?import\s+([\w, ]+)"
                           r"|c?import\s+(zenmon[\w.]*))", re.MULTILINE)


def cython_imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """A ``.pyx`` file's zenmon imports, by a line scan (``ast`` cannot read Cython)."""
    found = []
    for match in CYTHON_IMPORT.finditer(path.read_text()):
        indent, source, names, plain = match.groups()
        lazy = bool(indent)
        if plain:
            found.append((plain, lazy))
            continue
        dots = len(source) - len(source.lstrip("."))
        if dots:
            base = name.split(".")[: -dots]
            source = ".".join(base + ([source[dots:]] if source[dots:] else []))
        for alias in (n.strip() for n in names.split(",") if n.strip()):
            sub = f"{source}.{alias}"
            found.append((sub if sub in modules else source, lazy))
    return found


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """The zenmon modules `name` imports -> [(module, inside_a_function)].

    Imports under ``if TYPE_CHECKING:`` are left out (they never run). ``from X
    import y`` counts as an import of ``X.y`` when that is a module, else of ``X``.
    """
    if path.suffix == ".pyx":
        return cython_imports(name, path, modules)
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "zenmon":
                    found.append((alias.name, in_function))
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node)
            if target.split(".")[0] == "zenmon":
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in modules else target, in_function))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the zenmon modules it imports when it runs. A tool's imports inside
    functions are lazy by design and left out; the library's all count."""
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_tool = name == TOOLS or name.startswith(TOOLS + ".")
        graph[name] = {target for target, lazy in imports(name, path, modules)
                       if target != name and target in modules and not (is_tool and lazy)}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def library_graph() -> dict[str, set[str]]:
    graph = import_graph()
    return {k: v for k, v in graph.items() if not k.startswith(TOOLS)}


def tools_graph() -> dict[str, set[str]]:
    """The tools' own edges (the library's are checked apart)."""
    graph = import_graph()
    return {k: {t for t in v if t.startswith(TOOLS)} for k, v in graph.items()
            if k.startswith(TOOLS)}


# ---------------------------------------------------------------------------


def test_the_checker_sees_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_tools_at_the_top_level() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir()
                 if p.suffix in (".py", ".pyx") and p.stem.lstrip("_").startswith(TOOL_WORDS))
    assert top == [], f"tool modules beside the library: {top} (they belong in zenmon/tools/)"
    assert (PACKAGE / "tools" / "__init__.py").is_file()
    assert not (ROOT / "bench" / "naive.py").exists(), "the bench/naive.py re-export shim is back"


def test_no_tools_at_the_top_level_of_the_installed_package() -> None:
    import zenmon

    installed = Path(zenmon.__file__).parent
    top = sorted(p.name for p in installed.iterdir()
                 if p.suffix == ".py" and p.stem.lstrip("_").startswith(TOOL_WORDS))
    assert top == [], f"installed tool modules beside the library: {top}"
    assert (installed / "tools" / "demo.py").is_file(), "the tools are not installed"


def test_the_library_never_imports_its_tools() -> None:
    modules = package_modules()
    wrong = []
    for name, path in modules.items():
        if name.startswith(TOOLS):
            continue
        for target, lazy in imports(name, path, modules):
            if target == TOOLS or target.startswith(TOOLS + "."):
                if name not in FRONT_DOOR or not lazy:
                    wrong.append(f"{name} -> {target}")
    assert wrong == [], f"library modules importing zenmon.tools: {wrong}"


def test_importing_the_library_loads_no_tool() -> None:
    code = ("import sys, zenmon, zenmon.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('zenmon.tools')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_tools_import_graph_has_no_cycles() -> None:
    graph = tools_graph()
    assert "zenmon.tools.bench_remote" in graph, sorted(graph)
    assert find_cycles(graph) == []
    # the benchmarks share their helpers through runner/stats, not each other
    assert "zenmon.tools.bench_local" not in graph["zenmon.tools.bench_remote"]
    assert "zenmon.tools.bench_remote" not in graph["zenmon.tools.bench_local"]


#: The rooms of the Cython core (zenmon/_cy/*.pxi), each one concern of Core.
CORE_ROOMS = ("pid", "queues", "tables", "connectors", "subscriptions", "delivery", "links",
              "debug")
#: A function over Core in a room (`cdef inline` helpers are private to the core's one
#: translation unit and need no declaration: they are left out).
ROOM_FUNCTION = re.compile(r"^cdef (?!inline )[\w *]+?\b(\w+)\(Core (?:self|core)\b", re.M)


def test_the_core_is_split_into_rooms() -> None:
    """_core.pyx includes every room of _cy/ (none orphaned, none missing), and the
    .pxd, the table of contents, declares every function a room defines over Core."""
    pyx = (PACKAGE / "_core.pyx").read_text()
    included = re.findall(r'^include "_cy/(\w+)\.pxi"$', pyx, re.M)
    on_disk = sorted(p.stem for p in (PACKAGE / "_cy").glob("*.pxi"))
    assert sorted(included) == on_disk, (included, on_disk)
    assert sorted(CORE_ROOMS) == on_disk, on_disk
    assert not list(PACKAGE.glob("*.pxi")), "core parts belong in zenmon/_cy/"
    pxd = (PACKAGE / "_core.pxd").read_text()
    undeclared = [f"{room}.pxi: {name}" for room in CORE_ROOMS
                  for name in ROOM_FUNCTION.findall((PACKAGE / "_cy" / f"{room}.pxi").read_text())
                  if not re.search(rf"^cdef [\w *]+?\b{name}\(", pxd, re.M)]
    assert undeclared == [], f"functions over Core missing from _core.pxd: {undeclared}"


def test_core_is_a_thin_facade() -> None:
    """The Core class defines no cdef methods: its logic lives in the rooms."""
    pyx = (PACKAGE / "_core.pyx").read_text()
    body = pyx[pyx.index("cdef class Core:"):]
    assert not re.findall(r"^    cdef \w[\w *]* \w+\(self", body, re.M)


def test_the_library_import_graph_has_no_cycles() -> None:
    graph = library_graph()
    assert "zenmon.node" in graph and "zenmon._core" in graph["zenmon.node"], graph
    assert find_cycles(library_graph()) == []


# ------------------------------------------------- components see what they use

#: The modules that wire the library together: the package's front, the node.
WIRING = frozenset({"zenmon", "zenmon.node", "zenmon.cli", "zenmon.__main__"})
#: Underscore attributes a module may use on objects of another module's classes:
#: (module, attribute) -> why. Keep it short; every entry must still be in use.
PRIVATE_HOOKS = {
    ("zenmon.dispatcher", "_delivered"):
        "Process's hook for the DOWNs a dispatcher tick put in its inbox (wake, pace)",
}


def own_private_names(tree: ast.Module) -> set[str]:
    """The underscore names a module's own classes define: ``self._x = ...``,
    ``__slots__`` entries, methods."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id in ("self", "cls")):
                    own.add(target.attr)
                elif (isinstance(target, ast.Name) and target.id == "__slots__"
                      and isinstance(node.value, (ast.Tuple, ast.List))):
                    own.update(e.value for e in node.value.elts
                               if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return {name for name in own if name.startswith("_")}


def private_uses(source: str) -> list[tuple[int, str]]:
    """Where a module touches underscore attributes that are not its own -> [(line, expr)].

    ``self._x`` is always fine; ``other._x`` only when ``_x`` belongs to a class of the
    same module (a connector handing names to its successor); ``a._x._y`` never (that
    reaches through an object into another's private state, as ``self._node._core``
    did). Dunder names are public protocol.
    """
    tree = ast.parse(source)
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Name) and node.attr in own:
            continue
        found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def reaches_through_node(source: str) -> list[tuple[int, str]]:
    """Uses of some ``_node`` attribute's own attributes (``self._node.x``) -> [(line, expr)]."""
    return sorted((node.lineno, ast.unparse(node)) for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                  and node.value.attr == "_node")


def library_sources() -> dict[str, str]:
    return {name: path.read_text() for name, path in package_modules().items()
            if path.suffix == ".py" and not name.startswith(TOOLS)}


def test_the_private_attribute_checker_sees_a_reach() -> None:
    source = (
        "class A:\n"
        "    __slots__ = ('_mine',)\n"
        "    def f(self, other, node):\n"
        "        self._own = other._mine\n"       # same module: fine
        "        self._node._core.monitor()\n"   # a chain: never
        "        node._wake_io()\n"              # another module's: flagged
        "        return self._node.address\n")
    assert private_uses(source) == [(5, "self._node._core"), (6, "node._wake_io")]
    assert reaches_through_node(source) == [(5, "self._node._core"), (7, "self._node.address")]


def test_no_module_touches_another_modules_private_attributes() -> None:
    wrong, used = [], set()
    for name, source in library_sources().items():
        for line, expr in private_uses(source):
            hook = (name, expr.rpartition(".")[2])
            if hook in PRIVATE_HOOKS:
                used.add(hook)
            else:
                wrong.append(f"{name}:{line}: {expr}")
    assert wrong == [], ("private attributes of other modules' objects (give the owner a "
                         f"method, or pass what is needed in the context): {wrong}")
    assert used == set(PRIVATE_HOOKS), f"unused PRIVATE_HOOKS: {set(PRIVATE_HOOKS) - used}"


def test_components_never_see_the_node() -> None:
    """Components get a NodeContext: they import ``Node`` for type hints at most, and
    nothing goes through a node they hold (a Process keeps one only for ``.node``)."""
    graph = library_graph()
    wrong = [f"{name} imports zenmon.node" for name, targets in graph.items()
             if name not in WIRING and "zenmon.node" in targets]
    for name, source in library_sources().items():
        if name not in WIRING:
            wrong += [f"{name}:{line}: {expr}" for line, expr in reaches_through_node(source)]
    assert wrong == []
    # the context is what they are built with
    for name in ("connector", "proxy", "local", "links", "dispatcher", "iothread", "process"):
        source = (PACKAGE / f"{name}.py").read_text()
        assert "ctx: NodeContext" in source, f"zenmon.{name} is not built with the context"
