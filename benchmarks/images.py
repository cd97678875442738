"""Image replication figures (run by benchmarks/run.py, or alone: python benchmarks/images.py).

image_replicate_vs_copy: `skyctl image replicate alma9 --to b` copying a 256 MiB image between
two sandbox OpenStack sites (download from a's Glance, sha512 while streaming, upload to b's
Glance, check b's os_hash_value), over a plain streamed copy of the same bytes between the
same two Glance endpoints on loopback (requests: GET .../file streamed into PUT .../file, no
hashing, no checks, token fetched beforehand). Goal <= 1.3.

image_replicate_rss_mib / image_replicate_rss_growth_mib: the replicating process's peak RSS
(os.wait4) for the 256 MiB image, and how much more it is than for a 16 MiB one (goal <= 8:
memory stays flat with the image's size).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
SKYCTL = str(BIN / "skyctl")
GOALS = {"image_replicate_vs_copy": 1.3, "image_replicate_rss_growth_mib": 8}
MIB = 1024 * 1024

def _write_image(directory: Path, size: int) -> tuple[Path, str, str]:
    path = directory / f"source-{size}"
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for _ in range(size // MIB):
            f.write(block)
            md5.update(block)
            sha.update(block)
    return path, md5.hexdigest(), sha.hexdigest()


def _run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


class _Fixture:
    """Two in-process sandbox OpenStack sites, a federation, a signed list for one image."""

    def __init__(self, tmp: Path, size: int) -> None:
        from skyctl.sandbox.world import SImage
        from skyctl.testing import imagelists as il
        from skyctl.testing.sandbox import start_openstack_site

        self.tmp = tmp
        self.size = size
        for name in ("a", "b"):
            (tmp / name).mkdir(parents=True, exist_ok=True)
        self.a = start_openstack_site(tmp / "a", "a")
        self.b = start_openstack_site(tmp / "b", "b")
        self.b.world.image_dir = str(tmp / "b")
        path, md5, sha = _write_image(tmp / "a", size)
        self.sha = sha
        self.image_id = "bench-image-0000"
        self.a.world.images[self.image_id] = SImage(id=self.image_id, name="bench-alma9", size=size, path=str(path),
                                                    md5=md5, sha512_value=sha, status="active")
        ca = il.make_ca()
        endorser = il.make_endorser(ca)
        ca.write(tmp / "ca.pem")
        doc = {"sites": {n: {"driver": "openstack", "tier": "local" if n == "a" else "remote",
                             "cloud": s.cloud, "clouds_yaml": str(s.clouds_yaml)}
                         for n, s in (("a", self.a), ("b", self.b))},
               "image_lists": {"bench": {"trust": "ca.pem", "subject": endorser.dn}},
               "images": {"alma9": {"a": self.image_id, "list": "bench", "identifier": "bench-entry"}},
               "sizes": {"small": {"cpus": 1, "memory": "2GiB"}}}
        (tmp / "sky.yaml").write_text(yaml.safe_dump(doc))
        body = il.imagelist(endorser, [il.image_entry("bench-entry", sha, size=size)], ca=ca)
        (tmp / "list.smime").write_bytes(il.sign(body, endorser))
        self.env = {**os.environ, "SKYCTL_HOME": str(tmp / "home"), "SKYCTL_CONFIG": str(tmp / "sky.yaml"),
                    "NO_COLOR": "1"}
        subprocess.run([SKYCTL, "image", "import", str(tmp / "list.smime")], env=self.env, check=True,
                       capture_output=True)

    def forget_copy(self) -> None:
        """Drop b's copy and skyctl's record of it, so the next run copies again."""
        for image_id, img in list(self.b.world.images.items()):
            if img.created:
                del self.b.world.images[image_id]
                if img.path:
                    Path(img.path).unlink(missing_ok=True)
        (self.tmp / "home" / "data" / "image-replicas.json").unlink(missing_ok=True)

    def replicate(self) -> tuple[float, float]:
        self.forget_copy()
        return _run_measured([SKYCTL, "image", "replicate", "alma9", "--to", "b", "-o", "json"], self.env)

    def baseline(self, token_a: str, token_b: str) -> float:
        import requests

        self.forget_copy()
        base_b = f"{self.b.front.base_url}/image/v2/images"
        made = requests.post(base_b, json={"name": "plain", "disk_format": "raw", "container_format": "bare"},
                             headers={"X-Auth-Token": token_b}, timeout=30)
        made.raise_for_status()
        src = f"{self.a.front.base_url}/image/v2/images/{self.image_id}/file"
        dst = f"{base_b}/{made.json()['id']}/file"
        t, _ = _run_measured([sys.executable, "-c", _BASELINE_TWO_TOKENS, src, dst, token_a, token_b,
                              str(self.size)], dict(os.environ))
        img = self.b.world.images[made.json()["id"]]
        assert img.sha512 == self.sha, "the plain copy did not arrive whole"
        return t

    def token(self, site: Any) -> str:
        import openstack
        import openstack.config

        config = openstack.config.OpenStackConfig(config_files=[str(site.clouds_yaml)], load_envvars=False)
        conn = openstack.connection.Connection(config=config.get_one(cloud=site.cloud))
        try:
            return str(conn.session.get_token())
        finally:
            conn.close()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


_BASELINE_TWO_TOKENS = r"""
import sys, requests
src, dst, token_a, token_b, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
with requests.get(src, headers={"X-Auth-Token": token_a}, stream=True) as r:
    r.raise_for_status()
    class Body:
        def __len__(self): return size
        def __iter__(self): return r.iter_content(1024 * 1024)
    p = requests.put(dst, data=Body(), headers={"X-Auth-Token": token_b, "Content-Type": "application/octet-stream"})
    p.raise_for_status()
"""


def bench_images(results: dict[str, Any], runs: int, tmp: Path, quick: bool) -> None:
    big = (64 if quick else 256) * MIB
    fx = _Fixture(tmp / "images-big", big)
    try:
        token_a, token_b = fx.token(fx.a), fx.token(fx.b)
        ours, plain, rss_big = [], [], []
        for _ in range(runs):
            t, rss = fx.replicate()
            ours.append(t)
            rss_big.append(rss)
            plain.append(fx.baseline(token_a, token_b))
        results["image_replicate_s"] = round(statistics.median(ours), 3)
        results["image_copy_s"] = round(statistics.median(plain), 3)
        results["image_replicate_vs_copy"] = round(statistics.median(ours) / statistics.median(plain), 3)
        results["image_replicate_rss_mib"] = round(max(rss_big), 1)
    finally:
        fx.stop()
    small = _Fixture(tmp / "images-small", 16 * MIB)
    try:
        rss_small = [small.replicate()[1] for _ in range(max(runs // 3, 1))]
    finally:
        small.stop()
    results["image_replicate_rss_growth_mib"] = round(max(rss_big) - max(rss_small), 1)


if __name__ == "__main__":
    out: dict[str, Any] = {}
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="skyctl-bench-images-") as d:
        bench_images(out, 3 if quick else 5, Path(d), quick)
    print(json.dumps(out, indent=1))
