"""Loading the OpenNebula driver (config validation, --help) must not import pyone."""

from __future__ import annotations

import os
import subprocess
import sys


def test_driver_module_does_not_import_pyone() -> None:
    code = ("import sys, skyctl_opennebula.driver as d; "
            "from skyctl.site import SiteConfig; "
            "opts = d.OpenNebulaDriver.options_model.model_validate({'endpoint': 'http://x/RPC2'}); "
            "d.OpenNebulaDriver(SiteConfig(name='s', driver='opennebula', options=opts)); "
            "print(sorted(m for m in ('pyone', 'requests', 'lxml', 'xmltodict') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"
