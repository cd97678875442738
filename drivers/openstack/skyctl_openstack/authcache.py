"""Token reuse across commands: the Keystone token (with its service catalog) and the API
version documents discovered with it, kept per cloud in skyctl's private state dir.

Every skyctl command is a new process; without this each one authenticates (the identity
version document, POST /v3/auth/tokens) and discovers Nova's versions again: three requests
before the first useful one, about a second at 50 ms latency, and load on Keystone.

What is kept is keystoneauth's own state: `get_auth_state()` of the auth plugin (the token and
its body, catalog included), reinstalled with `set_auth_state()`, and each discovered URL's
version list, replayed through keystoneauth's own `Discover`. A stored token is reused until
`REUSE_MARGIN` before it expires (keystoneauth itself renews it `MIN_TOKEN_LIFE_SECONDS`
before expiry in a long-running process such as `burst watch`); a 401 from a service makes
keystoneauth drop it and authenticate once more (`Session.request`, allow_reauth), and the new
token is stored. A file is keyed by a hash of the cloud, region and credentials, so changing
the password or the application credential starts afresh.

Files are 0600 in a 0700 dir under `<state>/openstack-auth/`; the token is registered with
the log redaction and never printed. Anything unreadable, foreign or expired is ignored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from skyctl.logsafe import register_secret
from skyctl.paths import private_dir, state_dir, write_private

log = logging.getLogger("skyctl.openstack")

FORMAT = 1
REUSE_MARGIN = 300.0      # seconds: a token this close to expiry is not reused by a new command
DIR_NAME = "openstack-auth"
ENV_DISABLE = "SKYCTL_OPENSTACK_TOKEN_CACHE"   # "0": no reuse (every command authenticates)


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "1").strip().lower() not in ("0", "no", "false", "off")


def cache_key(cloud: str, region: str | None, auth_type: str | None, auth: Any, plugin: Any) -> str:
    """A file name that changes with anything that identifies the credential: keystoneauth's
    cache id where the plugin has one, else a hash of the clouds.yaml auth section."""
    try:
        plugin_id = plugin.get_cache_id() if plugin is not None else None
    except Exception:  # noqa: BLE001 - a plugin without one: the auth section decides
        plugin_id = None
    material = json.dumps({"cloud": cloud, "region": region, "auth_type": auth_type, "plugin": plugin_id,
                           "auth": auth if plugin_id is None else None}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class _Replay:
    """What keystoneauth's `get_version_data` needs from a session: a GET whose JSON is the
    stored version list."""

    class _Resp:
        def __init__(self, versions: list[dict[str, Any]]) -> None:
            self._versions = versions
            self.headers: dict[str, str] = {}
            self.text = ""

        def json(self) -> dict[str, Any]:
            return {"versions": self._versions}

    def __init__(self, versions: list[dict[str, Any]]) -> None:
        self._versions = versions

    def get(self, url: str, **_: Any) -> Any:
        return self._Resp(self._versions)


class AuthCache:
    """One cloud's stored token and discovery documents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: tuple[str | None, frozenset[str]] = (None, frozenset())

    @classmethod
    def for_cloud(cls, key: str, directory: Path | None = None) -> AuthCache:
        return cls((directory or state_dir() / DIR_NAME) / f"{key}.json")

    # ------------------------------------------------------------ load
    def _read(self) -> dict[str, Any] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError:
            return None
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            # not ours, or readable by others: never trust (nor keep) it
            log.warning("ignoring token cache %s: not private to this user", self.path)
            self.drop()
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == FORMAT else None

    def restore(self, plugin: Any, discovery_cache: dict[str, Any]) -> bool:
        """Install the stored token into `plugin` and the stored version documents into
        `discovery_cache` (a keystoneauth session's); False when there is nothing usable."""
        data = self._read()
        if data is None or not isinstance(data.get("auth_state"), str):
            return False
        try:
            plugin.set_auth_state(data["auth_state"])
            ref = plugin.auth_ref
            if ref is None or ref.will_expire_soon(REUSE_MARGIN):
                plugin.set_auth_state(None)
                return False
        except Exception:  # noqa: BLE001 - a stale format or a plugin without state support
            try:
                plugin.set_auth_state(None)
            except Exception:  # noqa: BLE001
                pass
            return False
        register_secret(ref.auth_token)
        from keystoneauth1.discover import Discover

        for url, versions in (data.get("discovery") or {}).items():
            if isinstance(url, str) and isinstance(versions, list) and url not in discovery_cache:
                try:
                    discovery_cache[url] = Discover(_Replay(versions), url)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - an odd document: discover it again
                    continue
        self._saved = (ref.auth_token, frozenset(discovery_cache))
        return True

    # ------------------------------------------------------------ save
    def save(self, plugin: Any, discovery_cache: dict[str, Any]) -> None:
        """Store the plugin's current token and the discovered versions (only when they
        changed since loaded or last saved)."""
        try:
            state = plugin.get_auth_state()
            ref = plugin.auth_ref
        except Exception:  # noqa: BLE001 - a plugin that cannot say: nothing to reuse
            return
        if not state or ref is None:
            return
        token = ref.auth_token
        if (token, frozenset(discovery_cache)) == self._saved:
            return
        register_secret(token)
        discovery: dict[str, list[dict[str, Any]]] = {}
        for url, disc in list(discovery_cache.items()):
            try:
                discovery[url] = disc.raw_version_data(allow_experimental=True, allow_deprecated=True,
                                                       allow_unknown=True)
            except Exception:  # noqa: BLE001
                continue
        expires = ref.expires
        body = {"format": FORMAT, "auth_state": state, "discovery": discovery,
                "expires_at": expires.astimezone(datetime.UTC).isoformat() if expires else None}
        try:
            private_dir(self.path.parent)
            write_private(self.path, json.dumps(body))
        except OSError as e:
            log.debug("could not store the token cache: %s", e.strerror or e)
            return
        self._saved = (token, frozenset(discovery_cache))

    def drop(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------- the fast path
#
# Importing openstacksdk costs more than the three requests the token saves (its package
# imports every service). A command whose cloud configuration is unchanged since the token was
# stored needs none of it: keystoneauth alone, with the stored token, the endpoints openstacksdk
# resolved and the compute microversion, serves its requests. Anything that could change what
# openstacksdk would build (a clouds.yaml or secure.yaml created, edited or removed, an OS_*
# variable, the cloud, region or timeout) misses, and the command takes the ordinary path.


def _env_digest() -> str:
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("OS_"))
    return hashlib.sha256(json.dumps(env).encode()).hexdigest()


def fast_key(cloud: str, clouds_yaml: str | None, region: str | None, timeout: float | None) -> str:
    material = json.dumps({"cloud": cloud, "clouds_yaml": clouds_yaml, "region": region, "timeout": timeout,
                           "cwd": os.getcwd(), "env": _env_digest()}, sort_keys=True)
    return "fast-" + hashlib.sha256(material.encode()).hexdigest()[:40]


def file_stamps(paths: list[str]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for p in dict.fromkeys(os.path.expanduser(p) for p in paths):
        try:
            st = os.stat(p)
            out.append([p, st.st_mtime_ns, st.st_size])
        except OSError:
            out.append([p, None, None])
    return out


class FastPath:
    """A stored route past openstacksdk: token, endpoints, microversion, TLS settings."""

    def __init__(self, session: Any, endpoints: dict[str, list[str]], compute_mv: tuple[int, int] | None) -> None:
        self.session = session
        self.endpoints = endpoints
        self.compute_mv = compute_mv
        self._adapters: dict[str, Any] = {}

    @classmethod
    def load(cls, key: str, pool_size: int, timeout: float | None, directory: Path | None = None) -> FastPath | None:
        fast = AuthCache.for_cloud(key, directory)._read()
        if fast is None or not isinstance(fast.get("files"), list) or not isinstance(fast.get("endpoints"), dict):
            return None
        if file_stamps([f[0] for f in fast["files"]]) != fast["files"]:
            return None
        data = AuthCache.for_cloud(str(fast.get("auth_file", "")), directory)._read()
        if data is None or not isinstance(data.get("auth_state"), str):
            return None
        from keystoneauth1 import access, session as ks_session
        from keystoneauth1.identity.access import AccessInfoPlugin

        try:
            state = json.loads(data["auth_state"])
            ref = access.create(body=state["body"], auth_token=state["auth_token"])
        except (ValueError, KeyError, TypeError):
            return None
        if ref.will_expire_soon(REUSE_MARGIN):
            return None
        register_secret(ref.auth_token)
        verify = fast.get("verify", True)
        cert = fast.get("cert")
        session = ks_session.Session(auth=AccessInfoPlugin(ref), verify=verify, cert=cert, timeout=timeout)
        adapter = ks_session.TCPKeepAliveAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10))
        for scheme in ("http://", "https://"):
            session.session.mount(scheme, adapter)
        mv = fast.get("compute_mv")
        return cls(session, fast["endpoints"], (int(mv[0]), int(mv[1])) if mv else None)

    @staticmethod
    def save(key: str, auth_file: str, files: list[str], verify: Any, cert: Any, endpoints: dict[str, list[str]],
             compute_mv: tuple[int, int] | None, directory: Path | None = None) -> None:
        body = {"format": FORMAT, "auth_file": auth_file, "files": file_stamps(files), "verify": verify,
                "cert": cert, "endpoints": endpoints, "compute_mv": list(compute_mv) if compute_mv else None}
        path = AuthCache.for_cloud(key, directory).path
        try:
            private_dir(path.parent)
            write_private(path, json.dumps(body))
        except OSError as e:
            log.debug("could not store the fast path: %s", e.strerror or e)

    def expiring(self) -> bool:
        ref = self.session.auth.auth_ref
        return ref is None or ref.will_expire_soon(120)

    def adapter(self, service: str) -> Any | None:
        """keystoneauth's Adapter at the endpoint openstacksdk resolved; None if not known."""
        known = self.endpoints.get(service)
        if not known:
            return None
        if service not in self._adapters:
            from keystoneauth1.adapter import Adapter

            self._adapters[service] = Adapter(self.session, service_type=known[0], endpoint_override=known[1])
        return self._adapters[service]

    def close(self) -> None:
        try:
            self.session.session.close()
        except Exception:  # noqa: BLE001 - closing must never raise
            pass
