"""Profiles that would exhaust memory or never finish rendering stop quickly with one line
naming the field: Jinja's sandbox bounds access, skyctl bounds the work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skyctl.testing.cli import Runner

ATTACKS = {
    "repeat": "{{ 'a' * 3000000000 }}",
    "repeat-list": "{{ ([1] * 3000000000) | length }}",
    "power": "{{ 9 ** 999999999 }}",
    "nested-loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "loops-over-a-stored-range": ("{% set r = range(1000) %}{% for a in r %}{% for b in r %}{% for c in r %}"
                                  "{% endfor %}{% endfor %}{% endfor %}"),
    "output": "{% for a in range(100000) %}{{ 'x' * 999999 }}{% endfor %}",
    "ljust": "{{ 'a'.ljust(3000000000) }}",
    "center-filter": "{{ 'a' | center(3000000000) }}",
    "percent-width": "{{ '%3000000000d' % 1 }}",
    "format-filter": "{{ '%3000000000d' | format(1) }}",
    "replace": "{{ ('a' * 900000) | replace('', 'b' * 900000) }}",
    "indent": "{{ ('a\\n' * 400000) | indent(900000) }}",
}


@pytest.mark.parametrize("template", list(ATTACKS.values()), ids=list(ATTACKS))
def test_a_template_that_does_too_much_is_stopped(run: Runner, tmp_path: Path, template: str) -> None:
    profile = tmp_path / "greedy.yaml"
    profile.write_text(f"files:\n  - path: /etc/motd\n    content: \"{template}\"\n")
    started = time.monotonic()
    res = run("context", "render", str(profile), "--for", "openstack")
    assert time.monotonic() - started < 10
    assert res.code == 2, res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "files[0].content" in lines[0] and "greedy" in lines[0], res.err


def test_ordinary_loops_and_padding_still_render(run: Runner, tmp_path: Path) -> None:
    profile = tmp_path / "fine.yaml"
    profile.write_text("files:\n  - path: /etc/hosts\n    content: \"{% for i in range(3) %}10.0.0.{{ i }} n{{ i }}\\n"
                       "{% endfor %}{{ 'x' | center(9) }}|{{ '%5d' % 42 }}|{{ 'ab' * 3 }}\"\n")
    res = run("context", "render", str(profile), "--for", "openstack")
    assert res.code == 0, res.err
    assert "10.0.0.2 n2" in res.out and "    x    |   42|ababab" in res.out
