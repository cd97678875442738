"""The connection to a site: openstacksdk's, built from clouds.yaml. Imported on a driver's first
use; with `errors` (which maps their exceptions), the only module that imports openstacksdk.

`Client` owns one openstacksdk connection (one keystoneauth session, one HTTP pool sized to
the site's parallelism) and speaks raw JSON over it: for 1000 servers that is ~100x cheaper
than building SDK resource objects. Every failure leaves here as a skyctl DriverError.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import openstack
import openstack.config
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.session import TCPKeepAliveAdapter
from openstack import exceptions as os_exc

from skyctl.errors import AuthError, DriverError, Transient
from skyctl_openstack.errors import error_for_exception, error_for_status, error_message, one_line


def load_region(cloud: str, clouds_yaml: str | None, region: str | None, timeout: float | None) -> Any:
    """openstacksdk's own config loading (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/
    openstack, /etc/openstack, secure.yaml), or an explicit clouds.yaml plus its sibling
    secure.yaml."""
    kwargs: dict[str, Any] = {}
    if clouds_yaml:
        path = Path(clouds_yaml).expanduser()
        if not path.is_file():
            raise AuthError(f"clouds.yaml not found at {path}")
        kwargs["config_files"] = [str(path)]
        sibling = path.with_name("secure.yaml")
        kwargs["secure_files"] = ([str(sibling)] if sibling.is_file() else []) + \
            list(openstack.config.loader.SECURE_FILES)
    try:
        # An explicit clouds_yaml must win over OS_CLIENT_CONFIG_FILE (openstacksdk reads the
        # environment's file first otherwise, and the site's cloud is then "not found").
        config = openstack.config.OpenStackConfig(load_envvars=clouds_yaml is None, **kwargs)
        extra: dict[str, Any] = {}
        if timeout:
            extra["api_timeout"] = timeout
        return config.get_one(cloud=cloud, region_name=region or None, **extra)
    except (os_exc.ConfigException, ks_exc.MissingRequiredOptions, ks_exc.NoMatchingPlugin) as e:
        # Messages name the cloud and the missing option, never a secret value.
        raise AuthError(f"cloud {cloud!r}: {one_line(e)}") from None


class Client:
    def __init__(self, *, site: str, cloud: str, clouds_yaml: str | None, region: str | None,
                 pool_size: int, timeout: float) -> None:
        self.site = site
        self.cloud_region = load_region(cloud, clouds_yaml, region, timeout)
        self.conn = openstack.connection.Connection(config=self.cloud_region)
        session = self.conn.session
        adapter = TCPKeepAliveAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10))
        for scheme in ("http://", "https://"):
            session.session.mount(scheme, adapter)
        self._lock = threading.Lock()
        self._compute_mv: tuple[int, int] | None = None

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # pragma: no cover - closing must never raise
            pass

    # ------------------------------------------------------------------ calls
    def authorize(self) -> None:
        """Get the token once, before parallel callers need it."""
        self._guard(lambda: self.conn.session.get_token(), "authenticate")

    def user_id(self) -> str | None:
        """The Keystone user id of the token (the same user from any machine)."""
        return self._guard(lambda: self.conn.session.get_user_id(), "authenticate") or None

    def project_id(self) -> str | None:
        """The project the token is scoped to."""
        return self._guard(lambda: self.conn.session.get_project_id(), "authenticate")  # type: ignore[no-any-return]

    def compute_microversion(self) -> tuple[int, int]:
        with self._lock:
            if self._compute_mv is None:
                data = self._guard(lambda: self.conn.compute.get_endpoint_data(), "compute version discovery")
                top = getattr(data, "max_microversion", None) if data is not None else None
                if not top:
                    # keystoneauth hides a failed version document (a 5xx, a reset) and answers
                    # without microversions. Never cache that: creating servers as if Nova were
                    # 2.1 would drop their tags, and ps (which filters on tags) would not see them.
                    raise Transient("compute version discovery gave no microversion; "
                                    "will retry", site=self.site)
                self._compute_mv = (int(top[0]), int(top[1]))
            return self._compute_mv

    def request(self, service: str, method: str, path: str, *, json: Any = None, params: Any = None,
                microversion: str | None = None, ok: tuple[int, ...] = (), what: str = "",
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One HTTP call; returns (status, JSON body or None). Statuses in `ok` below 400 or
        listed explicitly are returned; everything else raises the mapped DriverError."""
        # No hidden retries (the image proxy retries 503s for ~15 s): ops retries Transient.
        kwargs: dict[str, Any] = {"status_code_retries": 0}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = params
        if microversion:
            kwargs["microversion"] = microversion
        if headers:
            kwargs["headers"] = headers
        # Building the proxy runs version discovery on first use: guarded like a request.
        resp = self._guard(lambda: getattr(self.conn, service).request(path, method, raise_exc=False, **kwargs),
                           what or path)
        status = resp.status_code
        body: Any = None
        if resp.content and "json" in (resp.headers.get("Content-Type") or ""):
            try:
                body = resp.json()
            except ValueError:
                body = None
        if status < 400 or status in ok:
            return status, body
        raise error_for_status(status, error_message(body, resp.text if body is None else ""), self.site,
                               what=what, service=service)

    def _guard(self, call: Any, what: str) -> Any:
        """Run an SDK/keystoneauth call; its transport and auth failures leave as DriverErrors."""
        try:
            return call()
        except DriverError:
            raise
        except Exception as e:
            mapped = error_for_exception(e, self.site, what=what)
            if mapped is None:
                raise
            raise mapped from None
