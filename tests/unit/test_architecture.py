"""The dependency direction of DESIGN.md, checked on the source (AST), no import cycles
(function-level imports included), and lazy SDK imports.

model, errors  <-  site, keys  <-  policy, context (pure)  <-  drivers  <-  ops, ssh  <-  cli.
Nothing imports cli; drivers never import ops, state, cli or each other; an SDK is imported
only inside its own driver package. context gets SSH keys as data: it never imports keys.
skyctl.testing (the pytest plugin) sits beside the top: nothing in skyctl imports it, and
only its plugin and contract import pytest.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "skyctl"

# module prefix -> skyctl modules it may import (prefix match). Light helpers (paths, logsafe,
# validation) sit beside model/errors at the bottom.
BOTTOM = ("skyctl.model", "skyctl.errors", "skyctl.paths", "skyctl.logsafe", "skyctl.polling", "skyctl.validation",
          "skyctl.yamlsafe", "skyctl")
ALLOWED: dict[str, tuple[str, ...]] = {
    "skyctl": (),  # the package itself (version); new modules land here and must declare a layer
    "skyctl.model": (),
    "skyctl.errors": (),
    "skyctl.paths": (),
    "skyctl.logsafe": ("skyctl.model",),
    "skyctl.polling": (),
    "skyctl.validation": (),
    "skyctl.yamlsafe": (),
    "skyctl.site": ("skyctl.model",),
    "skyctl.keys": ("skyctl.model", "skyctl.errors", "skyctl.paths"),
    "skyctl.policy": (*BOTTOM, "skyctl.policy"),
    "skyctl.context": (*BOTTOM, "skyctl.context"),
    "skyctl.config": (*BOTTOM, "skyctl.site", "skyctl.policy", "skyctl.drivers"),
    "skyctl.drivers": (*BOTTOM, "skyctl.site"),
    "skyctl.state": BOTTOM,
    "skyctl.images": (*BOTTOM, "skyctl.images"),  # image lists: parse, S/MIME check, store
    "skyctl.ssh": (*BOTTOM, "skyctl.site", "skyctl.keys"),
    "skyctl.sandbox": (*BOTTOM, "skyctl.sandbox", "skyctl.site", "skyctl.config", "skyctl.policy", "skyctl.context"),
    "skyctl.ops": (*BOTTOM, "skyctl.ops", "skyctl.policy", "skyctl.context", "skyctl.site", "skyctl.config",
                   "skyctl.drivers", "skyctl.state", "skyctl.ssh", "skyctl.keys", "skyctl.images"),
    "skyctl.cli": ("skyctl",),
    "skyctl.testing": (*BOTTOM, "skyctl.testing", "skyctl.site", "skyctl.drivers", "skyctl.sandbox"),
    "skyctl.__main__": ("skyctl.cli",),
}
SDKS = {"openstack": "skyctl_openstack", "keystoneauth1": "skyctl_openstack", "pyone": "skyctl_opennebula"}
PARAMIKO_OK = ("skyctl.ssh", "skyctl.sandbox")
# cryptography: skyctl's key pair; the sandbox's own keys; the signer of an image list
KEYGEN_OK = ("skyctl.keys", "skyctl.sandbox", "skyctl.images.smime", "skyctl.testing.imagelists")
PYTEST_OK = ("skyctl.testing.plugin", "skyctl.testing.contract")


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" \
                    else module.split(".")[: len(module.split(".")) - node.level + 1]
                out.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.append(node.module)
    return out


def _rule_for(module: str) -> tuple[str, tuple[str, ...]]:
    best = max((k for k in ALLOWED if module == k or module.startswith(k + ".")), key=len, default=None)
    assert best is not None, f"{module}: no layer declared in tests/unit/test_architecture.py"
    return best, ALLOWED[best]


def _core_modules() -> list[tuple[Path, str]]:
    return [(p, _module_name(p, ROOT)) for p in sorted(PKG.rglob("*.py"))]


@pytest.mark.parametrize(("path", "module"), _core_modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_core_module_respects_the_layers(path: Path, module: str) -> None:
    layer, allowed = _rule_for(module)
    for imp in _imports(path, module):
        top = imp.split(".")[0]
        assert top not in SDKS, f"{module} imports the SDK {imp}; only {SDKS[top]} may"
        assert top not in ("skyctl_openstack", "skyctl_opennebula"), f"{module} imports driver package {imp}"
        if top == "paramiko":
            assert module.startswith(PARAMIKO_OK), f"{module} imports paramiko"
        if top == "cryptography":
            assert module.startswith(KEYGEN_OK), f"{module} imports cryptography (keys live in skyctl.keys)"
        if top in ("pytest", "_pytest"):
            assert module in PYTEST_OK, f"{module} imports pytest; only {', '.join(PYTEST_OK)} may"
        if imp.startswith("skyctl.testing"):
            assert module.startswith("skyctl.testing"), f"{module} imports the test helpers ({imp})"
        if top != "skyctl" or imp == "skyctl":
            continue
        ok = any(imp == a or imp.startswith(a + ".") for a in allowed if a != "skyctl") or \
            ("skyctl" in allowed and layer == "skyctl.cli") or imp == layer or imp.startswith(layer + ".")
        assert ok, f"{module} ({layer}) must not import {imp}"
        if not module.startswith("skyctl.cli") and module != "skyctl.__main__":
            assert not imp.startswith("skyctl.cli"), f"{module} imports the CLI ({imp}); nothing may"


@pytest.mark.parametrize("driver_pkg", sorted((ROOT / "drivers").glob("*/skyctl_*")), ids=lambda p: p.name)
def test_driver_packages_import_only_core_and_their_own_sdk(driver_pkg: Path) -> None:
    others = {"skyctl_openstack", "skyctl_opennebula"} - {driver_pkg.name}
    for path in driver_pkg.rglob("*.py"):
        module = _module_name(path, driver_pkg.parent)
        for imp in _imports(path, module):
            top = imp.split(".")[0]
            assert top not in others, f"{module} imports another driver ({imp})"
            assert not imp.startswith(("skyctl.ops", "skyctl.state", "skyctl.cli")), f"{module} imports {imp}"
            if top in SDKS:
                assert SDKS[top] == driver_pkg.name, f"{module} imports {imp}, which belongs to {SDKS[top]}"


def test_the_guest_access_rules_are_pure() -> None:
    """Who may log in to a sandbox VM is decided without paramiko, sockets or processes."""
    path = PKG / "sandbox" / "guest" / "access.py"
    tops = {imp.split(".")[0] for imp in _imports(path, "skyctl.sandbox.guest.access")}
    assert not tops & {"paramiko", "socket", "selectors", "subprocess", "threading"}, tops


# The roles every driver package names the same way (DESIGN.md, Layout).
DRIVER_ROLES = {"driver", "convert", "errors", "states", "transport"}


@pytest.mark.parametrize("driver_pkg", sorted((ROOT / "drivers").glob("*/skyctl_*")), ids=lambda p: p.name)
def test_driver_packages_name_their_roles_alike(driver_pkg: Path) -> None:
    modules = {p.stem for p in driver_pkg.glob("*.py")}
    assert DRIVER_ROLES <= modules, f"{driver_pkg.name} lacks {sorted(DRIVER_ROLES - modules)}"
    assert (driver_pkg.parent / "tests").is_dir(), f"{driver_pkg.name}: its tests belong beside it"


def test_the_pytest_plugin_loads_nothing_heavy() -> None:
    """Every pytest run where skyctl is installed imports the plugin: it must cost nothing."""
    code = ("import sys, skyctl.testing.plugin\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openstack', 'keystoneauth1', 'pyone', "
            "'paramiko', 'pydantic') or m.startswith(('skyctl.sandbox', 'skyctl.drivers', 'skyctl.testing.')) "
            "and m != 'skyctl.testing.plugin')\n"
            "print(heavy)\n"
            "sys.exit(1 if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


HEAVY = ("openstack", "keystoneauth1", "pyone", "paramiko", "matplotlib")
PROBE = """
import sys
from skyctl.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
""" % (HEAVY,)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["launch", "--help"], ["ps"]],
                         ids=["help", "version", "launch-help", "config-error"])
def test_cheap_paths_import_no_sdk(args: list[str], tmp_path: Path) -> None:
    env = {"SKYCTL_HOME": str(tmp_path), "SKYCTL_CONFIG": str(tmp_path / "missing.yaml"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env,
                          timeout=60)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line, proc.stderr
    assert line[0] == "HEAVY=", f"{args} imported {line[0][6:]}"


def _resolved_imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The skyctl modules `module` imports at run time (anywhere in the file; not the imports
    under `if TYPE_CHECKING:`, which never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else base)
    return (out & modules) - {module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_import_cycle() -> None:
    """No exceptions list: a cycle hidden in a function-level import fails too."""
    mods = dict((m, p) for p, m in _core_modules())
    graph = {m: _resolved_imports(p, m, set(mods)) for m, p in mods.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_function_level_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_form_no_cycle() -> None:
    """The allowed layer imports themselves are a one-way order."""
    layers = {k: {a for a in v if a in ALLOWED and a != k and a != "skyctl"} for k, v in ALLOWED.items()}
    assert _cycles(layers) == []


# ---------------------------------------------------------------- the tests themselves

TEST_TREES = [ROOT / "tests", *sorted((ROOT / "drivers").glob("*/tests"))]


def _test_files() -> list[Path]:
    return sorted(p for tree in TEST_TREES for p in tree.rglob("*.py"))


def _imports_of_tests(source: str, local_names: set[str]) -> list[str]:
    """What `source` imports from the test trees: `tests.*`, relative imports, any conftest, or
    a module that lives beside the tests (`local_names`, as pytest's rootdir imports allow)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "", node.level)]
        else:
            continue
        for name, level in names:
            parts = name.split(".")
            if level or parts[0] == "tests" or "conftest" in parts or parts[0] in local_names:
                found.append("." * level + name)
    return found


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_test_modules_import_no_other_test_module(path: Path) -> None:
    """Tests share through fixtures (a conftest.py) or skyctl.testing, never by importing each
    other: a test module stays movable between tiers, and pytest alone decides what a conftest
    provides to whom."""
    local = {p.stem for p in _test_files()} - {"__init__"}
    found = _imports_of_tests(path.read_text(encoding="utf-8"), local)
    assert not found, f"{path.relative_to(ROOT)} imports {found}: share it as a fixture (conftest.py) or in skyctl.testing"


def test_the_test_import_check_sees_every_way_in() -> None:
    source = ("import tests.skycli\nfrom tests.cli.conftest import run\nfrom . import helper\n"
              "from conftest import Runner\nimport test_other\nfrom skyctl.testing.cli import SkyCli\nimport json\n")
    assert _imports_of_tests(source, {"test_other"}) == [
        "tests.skycli", "tests.cli.conftest", ".", "conftest", "test_other"]


def test_unit_tests_cannot_open_sockets(no_sockets: list[str]) -> None:
    """tests/unit/conftest.py's guard: a socket in a unit test fails it, even one the code swallowed."""
    import socket

    with pytest.raises(RuntimeError, match="unit tests run without any"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    assert no_sockets
    no_sockets.clear()  # seen: this test itself must pass
