"""The federation at run time: one driver per site, created lazily, and parallel fan-out.

Every operation goes through a `Sky`: it owns the drivers (one connection pool per site),
the state store, and the reporter that progress events go out through.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from skyctl.config import Federation
from skyctl.drivers import Driver, registry
from skyctl.errors import DriverError, SkyError, Transient, with_site
from skyctl.logsafe import site_scope
from skyctl.ops.reporter import Reporter
from skyctl.polling import READ_ATTEMPTS, retry
from skyctl.state import State

T = TypeVar("T")


_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def owner_label(who: str) -> str:
    """A name or id as a label value every cloud takes (no spaces, commas or slashes; short)."""
    return _LABEL_UNSAFE.sub("_", who.strip())[:63] or "unknown"


def retrying(call: Callable[[], T], attempts: int = READ_ATTEMPTS) -> T:
    """Repeat an idempotent call on Transient errors (5xx, resets, timeouts) with jittered backoff."""
    return retry(call, on=Transient, attempts=attempts)


class Sky:
    def __init__(self, federation: Federation, *, state: State | None = None,
                 reporter: Reporter | None = None, acting_for: str | None = None) -> None:
        self.federation = federation
        self._state = state
        self.reporter = reporter or Reporter()
        self._drivers: dict[str, Driver] = {}
        self._owners: dict[str, str] = {}
        self._acting_for = acting_for
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = State()
        return self._state

    def owner(self, site: str) -> str:
        """The owner label of the caller's nodes on `site`: `acting_for` (the CLI's --owner),
        else SKYCTL_OWNER, else `owner:` in the
        federation file's defaults (a shared robot account), else who the site knows the
        caller as (Keystone user id, OpenNebula user), else the local login name. Never
        anything kept in local state, so an emptied state does not change who you are."""
        with self._lock:
            known = self._owners.get(site)
        if known is not None:
            return known
        who = self._acting_for or os.environ.get("SKYCTL_OWNER") or self.federation.defaults.owner
        if not who:
            with site_scope(site):
                who = retrying(self.driver(site).identity)
        if not who:
            import getpass

            who = getpass.getuser()
        label = owner_label(who)
        with self._lock:
            self._owners[site] = label
        return label

    @property
    def site_names(self) -> list[str]:
        return list(self.federation.sites)

    def driver(self, site: str) -> Driver:
        with self._lock:
            drv = self._drivers.get(site)
            if drv is None:
                cfg = self.federation.site(site)
                drv = registry.load(cfg.driver, site=site)(cfg)
                self._drivers[site] = drv
            return drv

    def fanout(self, fn: Callable[[Driver], T], sites: Iterable[str] | None = None, *,
               retry: bool = True) -> dict[str, T | DriverError]:
        """Call `fn(driver)` on every site at once; a site's failure is returned, not raised.

        `fn` must be safe to repeat (reads, deletes): a Transient failure is retried with
        backoff before the site counts as failed. Creates never come through here. A `fn`
        that retries its own calls passes retry=False (retries must not multiply)."""
        names = list(sites) if sites is not None else self.site_names
        results: dict[str, T | DriverError] = {}

        def one(site: str) -> tuple[str, T | DriverError]:
            try:
                call = lambda: fn(self.driver(site))  # noqa: E731
                with site_scope(site):  # a library's log lines name the site
                    return site, retrying(call) if retry else call()
            except DriverError as e:
                return site, with_site(e, site)
            except SkyError:
                raise
            except OSError as e:  # a driver that let a socket error escape
                return site, Transient(f"{type(e).__name__}: {e}", site=site)

        if len(names) <= 1:
            for s in names:
                k, v = one(s)
                results[k] = v
            return results
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="fanout") as pool:
            for k, v in pool.map(one, names):
                results[k] = v
        return {s: results[s] for s in names}

    def gather(self, fn: Callable[[Driver], T], sites: Iterable[str] | None = None, *,
               retry: bool = True) -> tuple[dict[str, T], dict[str, DriverError]]:
        """`fanout`, split into (answers, errors), both in site order; every failed site is
        told to the reporter, so the others go on and the user still hears of it."""
        answers: dict[str, T] = {}
        errors: dict[str, DriverError] = {}
        for site, res in self.fanout(fn, sites, retry=retry).items():
            if isinstance(res, DriverError):
                self.reporter.site_error(site, res)
                errors[site] = res
            else:
                answers[site] = res
        return answers, errors

    def close(self) -> None:
        with self._lock:
            drivers, self._drivers = list(self._drivers.values()), {}
        for d in drivers:
            try:
                d.close()
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                pass
        if self._state is not None:
            self._state.close()

    def __enter__(self) -> Sky:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
