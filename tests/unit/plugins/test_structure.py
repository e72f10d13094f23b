"""The shape of the plugin tree (docs/ARCHITECTURE.md): no function over 80 lines, no import cycle in
module_utils, and the packages import only in the direction of the flow
(modules -> stabilize/probes -> domain/common; action plugins -> plugin_utils/judges -> domain/common)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PLUGINS = ROOT / "plugins"
PREFIX = "ansible_collections.sre.gunicorn_doctor.plugins."
MAX_LINES = 80
# What each module_utils package may import besides itself.
ALLOWED = {
    "common": set(),
    "domain": {"common"},
    "probes": {"common", "domain"},
    "judges": {"common", "domain"},
    "stabilize": {"common", "domain", "probes"},
}


def python_files(where):
    return sorted(p for p in where.rglob("*.py") if p.name != "__init__.py")


def module_name(path):
    return ".".join(path.relative_to(PLUGINS).with_suffix("").parts)


def imported(path):
    """The collection modules `path` imports (plugins-relative dotted names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PREFIX):
            base = node.module[len(PREFIX):]
            for alias in node.names:
                candidate = "%s.%s" % (base, alias.name)
                found.add(candidate if (PLUGINS / (candidate.replace(".", "/") + ".py")).is_file() else base)
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PREFIX):] for a in node.names if a.name.startswith(PREFIX))
    return found


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in python_files(PLUGINS):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append("%s:%d %s() has %d lines" % (path.relative_to(ROOT), node.lineno, node.name, lines))
    assert not long, "split these into one helper per check: " + "; ".join(long)


def test_module_utils_has_no_import_cycle():
    graph = dict((module_name(p), imported(p)) for p in python_files(PLUGINS / "module_utils"))
    done, cycles = set(), []

    def visit(name, stack):
        if name in stack:
            cycles.append(" -> ".join(stack[stack.index(name):] + [name]))
            return
        if name in done or name not in graph:
            return
        for target in sorted(graph[name]):
            visit(target, stack + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_packages_import_in_the_direction_of_the_flow():
    wrong = []
    for path in python_files(PLUGINS / "module_utils"):
        package = path.relative_to(PLUGINS / "module_utils").parts[0]
        for target in imported(path):
            parts = target.split(".")
            if parts[0] == "plugin_utils":
                wrong.append("%s imports controller-only %s" % (module_name(path), target))
            elif parts[0] == "module_utils" and parts[1] != package and parts[1] not in ALLOWED[package]:
                wrong.append("%s imports %s" % (module_name(path), target))
    assert not wrong, "; ".join(wrong)


def test_the_checker_reads_function_length_and_imports_from_the_ast(tmp_path):
    """The measures above: an 81-line function is 81 lines; a package import is named by its package."""
    source = "def f():\n" + "    x = 1\n" * 80
    tree = ast.parse(source)
    function = tree.body[0]
    assert function.end_lineno - function.lineno + 1 == 81
    (tmp_path / "a.py").write_text("from %smodule_utils.common import b\n" % PREFIX)
    assert imported(tmp_path / "a.py") == {"module_utils.common"}


def shipped_with(module):
    """The collection's module_utils AnsiballZ ships with plugins/modules/MODULE.py: its imports, followed."""
    todo, seen = ["modules." + module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PLUGINS / (name.replace(".", "/") + ".py")
        if path.is_file():
            todo.extend(imported(path))
    return sorted(name for name in seen if name.startswith("module_utils."))


def test_the_probe_ships_no_stabilize_code_stabilize_probe_does():
    # Every host of an audit builds, receives and unpacks the probe's payload: stabilize's code stays out of it.
    assert [name for name in shipped_with("probe") if name.startswith("module_utils.stabilize.")] == []
    assert "module_utils.stabilize.preview" in shipped_with("stabilize_probe")
