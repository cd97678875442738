"""The local state store: private files, versioned schema, safe with two processes at once."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from skyctl.errors import StateError
from skyctl.model import GroupSpec
from skyctl.state import SCHEMA_VERSION, State


SPEC = GroupSpec("alma9", 2, 4096, "small", ("base",), {"site_name": "x"}, ("token",))


def test_files_are_private(tmp_path: Path) -> None:
    st = State(tmp_path / "state" / "state.db")
    st.ensure_group("g", SPEC)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    for f in (tmp_path / "state").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    st.close()


def test_schema_is_versioned_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    st = State(path)
    assert st.schema_version == SCHEMA_VERSION
    st.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer than this skyctl"):
        State(path)


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="unusable"):
        State(path)


def test_intents_and_nodes_round_trip(tmp_path: Path) -> None:
    st = State(tmp_path / "s.db")
    st.ensure_group("g", SPEC)
    i = st.begin("l1", "create", "g", "g-0", "home")
    assert [x.status for x in st.intents("pending")] == ["pending"]
    st.finish(i, "done", "id-1")
    st.record_node("g-0", "g", "home", "id-1", "l1")
    assert st.intents("pending") == []
    assert [(n.name, n.cloud_id) for n in st.nodes("g")] == [("g-0", "id-1")]
    assert st.group_spec("g") == SPEC
    st.close()


RESERVE = """
import sys
from pathlib import Path
from skyctl.state import State
st = State(Path(sys.argv[1]))
out = []
for _ in range(40):
    out.extend(st.reserve_indices("g", 3))
print(",".join(map(str, out)))
"""


def test_two_processes_never_get_the_same_node_index(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st = State(path)
    st.ensure_group("g", SPEC)
    st.close()
    procs = [subprocess.Popen([sys.executable, "-c", RESERVE, str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    got: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        got.extend(int(x) for x in out.strip().split(","))
    assert len(got) == 3 * 40 * 3
    assert len(set(got)) == len(got)


def test_a_group_spec_of_schema_1_reads_back_with_secrets_by_name_only(tmp_path: Path) -> None:
    """Rows written before GroupSpec kept every --var under "vars", a secret's value masked."""
    import json

    st = State(tmp_path / "s.db")
    st.ensure_group("g", SPEC)
    old = {"image": "alma9", "size": "small", "cpus": 2, "memory_mib": 4096, "contexts": ["base"],
           "vars": {"site_name": "x", "token": "****"}, "site": None}
    with st.tx() as db:
        db.execute("UPDATE groups SET spec=? WHERE name='g'", (json.dumps(old),))
    assert st.group_spec("g") == SPEC
    st.close()
