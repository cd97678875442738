"""Output formats: JSON/YAML documents on stdout only, readable multi-line text in YAML."""

from __future__ import annotations

import json

import pytest
import yaml

from skyctl.cli.terminal import OutputFormat, Terminal


def test_yaml_writes_multiline_text_as_blocks_and_round_trips(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"user_data": "#cloud-config\nusers:\n- default\n", "n": 3, "tabbed": "a\tb\nc"}
    Terminal().emit(data, OutputFormat.yaml)
    out = capsys.readouterr().out
    assert "user_data: |" in out
    assert yaml.safe_load(out) == data


def test_json_is_one_document_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    Terminal().emit([{"a": 1}], OutputFormat.json)
    cap = capsys.readouterr()
    assert json.loads(cap.out) == [{"a": 1}] and cap.err == ""
