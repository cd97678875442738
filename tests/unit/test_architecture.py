"""The dependency direction of DESIGN.md, checked on the source (AST), and lazy SDK imports.

model, errors  <-  policy, context (pure)  <-  drivers  <-  ops  <-  cli.
Nothing imports cli; drivers never import ops, state, cli or each other; an SDK is imported
only inside its own driver package.
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
          "skyctl")
ALLOWED: dict[str, tuple[str, ...]] = {
    "skyctl": (),  # the package itself (version); new modules land here and must declare a layer
    "skyctl.model": (),
    "skyctl.errors": (),
    "skyctl.paths": (),
    "skyctl.logsafe": ("skyctl.model",),
    "skyctl.polling": (),
    "skyctl.validation": (),
    "skyctl.site": ("skyctl.model",),
    "skyctl.policy": (*BOTTOM, "skyctl.policy"),
    "skyctl.context": (*BOTTOM, "skyctl.context"),
    "skyctl.config": (*BOTTOM, "skyctl.site", "skyctl.policy", "skyctl.drivers"),
    "skyctl.drivers": (*BOTTOM, "skyctl.site"),
    "skyctl.state": BOTTOM,
    "skyctl.ssh": (*BOTTOM, "skyctl.site"),
    "skyctl.sandbox": (*BOTTOM, "skyctl.sandbox", "skyctl.site", "skyctl.config", "skyctl.policy", "skyctl.context"),
    "skyctl.ops": (*BOTTOM, "skyctl.ops", "skyctl.policy", "skyctl.context", "skyctl.site", "skyctl.config",
                   "skyctl.drivers", "skyctl.state", "skyctl.ssh"),
    "skyctl.cli": ("skyctl",),
    "skyctl.__main__": ("skyctl.cli",),
}
SDKS = {"openstack": "skyctl_openstack", "keystoneauth1": "skyctl_openstack", "pyone": "skyctl_opennebula"}
PARAMIKO_OK = ("skyctl.ssh", "skyctl.sandbox", "skyctl.context")


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


HEAVY = ("openstack", "keystoneauth1", "pyone", "paramiko")
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
