"""Secret variables of every type (string, list, int) never reach state.db, JSON output or the
--debug log of a launch against the sandbox; the clouds still receive them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


CANARY_S = "CANARYs7Qx"
CANARY_L = ("CANARYl1Zq", "CANARYl2Wv")
CANARY_N = 918273645
CANARIES = (CANARY_S, *CANARY_L, str(CANARY_N))

PROFILE = """\
variables:
  api_key: {type: string, secret: true, required: true}
  tokens: {type: list, secret: true, required: true}
  pin: {type: int, secret: true, required: true}
  motd: {type: string, default: hello}
files:
  - path: /etc/skyctl-secrets
    content: "{{ api_key }} {{ tokens | join(',') }} {{ pin }} {{ motd }}"
"""


def _state_bytes(home: Path) -> bytes:
    found = sorted(home.rglob("state.db*"))
    assert found, "no state.db under SKYCTL_HOME"
    return b"".join(p.read_bytes() for p in found if p.is_file())


def test_string_list_and_int_secrets_stay_out_of_state_output_and_logs(tmp_path: Path, skyctl_sandbox: Any) -> None:
    profile = tmp_path / "secrets.yaml"
    profile.write_text(PROFILE)
    (tmp_path / "home").mkdir()
    with skyctl_sandbox(tmp_path / "home", boot_delay=0.05) as sky:
        launch = sky.run("--debug", "launch", "sec", "--wait", "--site", "home", "--context", "base", "--context", str(profile),
                         "--var", f"api_key={CANARY_S}", "--var", f"tokens={','.join(CANARY_L)}",
                         "--var", f"pin={CANARY_N}", "--var", "motd=hello-visible", "-o", "json")
        ps = sky.run("--debug", "ps", "sec", "-o", "json")
        show = sky.run("show", "sec-0", "-o", "yaml")
        seen = {"launch stdout": launch.stdout, "launch --debug log": launch.stderr,
                "ps stdout": ps.stdout, "ps --debug log": ps.stderr, "show": show.stdout}
        state = _state_bytes(sky.home)
        for canary in CANARIES:
            for where, text in seen.items():
                assert canary not in text, f"{canary} in {where}"
            assert canary.encode() not in state, f"{canary} in state.db"
        assert b"hello-visible" in state  # the non-secret variable is kept, so the check looks in the right place
        assert b"api_key" in state and b"tokens" in state and b"pin" in state  # the names are kept
        assert "DEBUG" in launch.stderr or "debug" in launch.stderr.lower()  # the log was on
        # the node got the real values
        node = sky.nodes("sec")[0]
        assert node["name"] == "sec-0"
        got = sky.run("ssh", "sec-0", "--", "cat", "var/lib/cloud/instance/user-data.txt")
        assert f"{CANARY_S} {','.join(CANARY_L)} {CANARY_N} hello-visible" in got.stdout
        sky.run("delete", "sec", "--yes")
