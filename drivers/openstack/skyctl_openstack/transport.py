"""The connection to a site: openstacksdk's, built from clouds.yaml. Imported on a driver's first
use; with `errors` (which maps their exceptions), the only module that imports openstacksdk.

`Client` owns one openstacksdk connection (one keystoneauth session, one HTTP pool sized to
the site's parallelism) and speaks raw JSON over it: for 1000 servers that is ~100x cheaper
than building SDK resource objects. Every failure leaves here as a skyctl DriverError.

A command that finds a stored token for an unchanged cloud configuration (`authcache`) starts
on keystoneauth alone, with the endpoints and microversion openstacksdk resolved before, and
imports openstacksdk only if it needs it after all (a 401, a token about to expire, a service
not used before).
"""

from __future__ import annotations

import threading
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from skyctl.errors import AuthError, DriverError, Transient
from skyctl_openstack import authcache
from skyctl_openstack.errors import error_for_exception, error_for_status, error_message, one_line


def load_region(cloud: str, clouds_yaml: str | None, region: str | None, timeout: float | None) -> Any:
    """openstacksdk's own config loading (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/
    openstack, /etc/openstack, secure.yaml), or an explicit clouds.yaml plus its sibling
    secure.yaml."""
    import openstack.config
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

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


def _config_files(clouds_yaml: str | None) -> list[str]:
    """Every file whose appearance or change could change what openstacksdk builds."""
    from openstack.config import loader

    if clouds_yaml:
        path = Path(clouds_yaml).expanduser()
        return [str(path), str(path.with_name("secure.yaml")), *loader.SECURE_FILES, *loader.VENDOR_FILES]
    return [*loader.CONFIG_FILES, *loader.SECURE_FILES, *loader.VENDOR_FILES]


class Client:
    def __init__(self, *, site: str, cloud: str, clouds_yaml: str | None, region: str | None,
                 pool_size: int, timeout: float) -> None:
        self.site = site
        self._args = (cloud, clouds_yaml, region, pool_size, timeout)
        self._lock = threading.Lock()
        self._compute_mv: tuple[int, int] | None = None
        self._auth_cache: authcache.AuthCache | None = None
        self._fast: authcache.FastPath | None = None
        self._fast_key: str | None = None
        self._endpoints: dict[str, list[str]] = {}
        self._retired: list[authcache.FastPath] = []   # closed with the client (others may be mid-call)
        self.conn: Any = None
        self.token_reused = False
        if authcache.enabled():
            self._fast_key = authcache.fast_key(cloud, clouds_yaml, region, timeout)
            try:
                self._fast = authcache.FastPath.load(self._fast_key, pool_size, timeout)
            except Exception:  # noqa: BLE001 - a stored route that does not work: the ordinary one
                self._fast = None
        if self._fast is not None:
            self.token_reused = True
            self._compute_mv = self._fast.compute_mv
        else:
            self._open_sdk()

    def _open_sdk(self) -> None:
        """The ordinary path: openstacksdk's connection from clouds.yaml (a stored token reused)."""
        from keystoneauth1.session import TCPKeepAliveAdapter
        from openstack import connection

        cloud, clouds_yaml, region, pool_size, timeout = self._args
        self.cloud_region = load_region(cloud, clouds_yaml, region, timeout)
        self.conn = connection.Connection(config=self.cloud_region)
        session = self.conn.session
        adapter = TCPKeepAliveAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10))
        for scheme in ("http://", "https://"):
            session.session.mount(scheme, adapter)
        if authcache.enabled() and session.auth is not None:
            config = self.cloud_region.config
            key = authcache.cache_key(cloud, self.cloud_region.region_name, config.get("auth_type"),
                                      config.get("auth"), session.auth)
            self._auth_cache = authcache.AuthCache.for_cloud(key)
            self.token_reused = self._auth_cache.restore(session.auth, session._discovery_cache)

    def _leave_fast(self) -> None:
        """Go the ordinary way from now on (the stored route no longer serves)."""
        with self._lock:
            if self._fast is None:
                return
            self._open_sdk()
            self.conn.session.get_token()   # before parallel callers need it
            # Only now: a parallel caller that sees no route must find the connection ready.
            self._retired.append(self._fast)
            self._fast = None

    def save_auth(self) -> None:
        """Store the token, discovered versions and the route past openstacksdk for the next
        command (when they changed)."""
        if self._auth_cache is None or self.conn is None:
            return
        session = self.conn.session
        self._auth_cache.save(session.auth, session._discovery_cache)
        if self._fast_key and self._endpoints and self._auth_cache.path.is_file():
            verify, cert = self.cloud_region.get_requests_verify_args()
            authcache.FastPath.save(self._fast_key, self._auth_cache.path.stem, _config_files(self._args[1]),
                                    verify, cert, dict(self._endpoints), self._compute_mv)

    def close(self) -> None:
        try:
            self.save_auth()
        except Exception:  # pragma: no cover - a cache write must never fail a command
            pass
        for fast in [*self._retired, *([self._fast] if self._fast is not None else [])]:
            fast.close()
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pragma: no cover - closing must never raise
                pass

    # ------------------------------------------------------------------ calls
    def _session(self) -> Any:
        return self._fast.session if self._fast is not None else self.conn.session

    def _sdk(self) -> Any:
        """openstacksdk's connection, leaving the stored route first if on it (calls that
        the route past openstacksdk does not carry: streamed bodies)."""
        if self.conn is None:
            self._guard(self._leave_fast, "authenticate")
        return self.conn

    def has_service(self, *service_types: str) -> bool:
        """Whether the token's catalog lists one of `service_types` (public, in the cloud's
        region), read from the token either way (no openstacksdk needed)."""
        session = self._session()
        ref = self._guard(lambda: session.auth.get_access(session), "authenticate")
        region = self._args[2]
        return any(ref.service_catalog.get_urls(service_type=kind, interface="public", region_name=region)
                   for kind in service_types)

    def authorize(self) -> None:
        """Get the token once, before parallel callers need it (a stored one when still
        good: see `authcache`)."""
        self._guard(lambda: self._session().get_token(), "authenticate")
        if not self.token_reused:
            self.save_auth()

    def user_id(self) -> str | None:
        """The Keystone user id of the token (the same user from any machine)."""
        return self._guard(lambda: self._session().get_user_id(), "authenticate") or None

    def project_id(self) -> str | None:
        """The project the token is scoped to."""
        return self._guard(lambda: self._session().get_project_id(), "authenticate")  # type: ignore[no-any-return]

    def compute_microversion(self) -> tuple[int, int]:
        if self._compute_mv is None and self._fast is not None:
            self._leave_fast()
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
                self.save_auth()
            return self._compute_mv

    def _send(self, service: str, method: str, path: str, kwargs: dict[str, Any], what: str) -> Any:
        fast = self._fast
        if fast is not None:
            adapter = fast.adapter(service) if not fast.expiring() else None
            if adapter is not None:
                resp = self._guard(lambda: adapter.request(path, method, raise_exc=False, **kwargs), what or path)
                if resp.status_code != 401:
                    return resp
            # a refused token, one about to expire, a service not used before: the ordinary way
            self._guard(self._leave_fast, "authenticate")

        def call() -> Any:
            proxy = getattr(self.conn, service)
            resp = proxy.request(path, method, raise_exc=False, **kwargs)
            if service not in self._endpoints and resp.status_code < 400:
                endpoint = proxy.get_endpoint()
                if endpoint:
                    self._endpoints[service] = [str(proxy.service_type), str(endpoint)]
            return resp

        # Building the proxy runs version discovery on first use: guarded like a request.
        return self._guard(call, what or path)

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
        resp = self._send(service, method, path, kwargs, what)
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

    def send_data(self, service: str, method: str, path: str, data: Any, *, what: str = "") -> int:
        """Send a request body streamed from `data` (an iterable of chunks; `len(data)` is sent
        as Content-Length), as Glance's image upload wants it."""
        headers = {"Content-Type": "application/octet-stream"}
        resp = self._guard(lambda: getattr(self._sdk(), service).request(
            path, method, raise_exc=False, data=data, headers=headers, status_code_retries=0,
            connect_retries=0), what or path)
        if resp.status_code < 400:
            return int(resp.status_code)
        body = _json_or_none(resp)
        raise error_for_status(resp.status_code, error_message(body, resp.text if body is None else ""), self.site,
                               what=what, service=service)

    def stream(self, service: str, path: str, *, what: str = "", chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """GET a body in chunks without holding it (image download); the response is closed
        when the iteration ends or is abandoned."""
        resp = self._guard(lambda: getattr(self._sdk(), service).request(
            path, "GET", raise_exc=False, stream=True, status_code_retries=0), what or path)
        if resp.status_code >= 400:
            body = _json_or_none(resp)
            raise error_for_status(resp.status_code, error_message(body, resp.text if body is None else ""),
                                   self.site, what=what, service=service)

        def chunks() -> Iterator[bytes]:
            try:
                for part in resp.iter_content(chunk):
                    if part:
                        yield part
            except Exception as e:
                mapped = error_for_exception(e, self.site, what=what or path)
                if mapped is None:
                    raise
                raise mapped from None
            finally:
                resp.close()
        return chunks()

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


def _json_or_none(resp: Any) -> Any:
    if resp.content and "json" in (resp.headers.get("Content-Type") or ""):
        try:
            return resp.json()
        except ValueError:
            return None
    return None
