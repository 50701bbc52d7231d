"""API keys -> tenants, and the rule that auth may be off only on loopback.

Keys come from configuration (`LRRT_API_KEYS='tenant:key,...'`), never code. With no keys configured
every request belongs to the tenant `local`; that is safe only when nobody else can reach the port,
so `ensure_safe_bind` refuses any other bind address before the server starts listening.
"""

from __future__ import annotations

import hmac
import ipaddress

from lrrt.settings import Settings

#: The one tenant of a server running without API keys (local all-in-one mode).
LOCAL_TENANT = "local"


class UnsafeBind(RuntimeError):
    """The server was asked to listen beyond loopback with authentication switched off."""


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback IPs; anything else (0.0.0.0, ::, a hostname) counts as exposed."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def ensure_safe_bind(host: str, settings: Settings) -> None:
    """Raise UnsafeBind when `host` is reachable from other machines and no API keys are configured."""
    if settings.tenants_by_key() or is_loopback(host):
        return
    raise UnsafeBind(
        f"refusing to listen on {host!r} with authentication off: anyone who can reach that address could "
        "submit and read jobs. Set LRRT_API_KEYS='tenant:key,...' to require API keys, or bind to 127.0.0.1."
    )


def tenant_for_key(presented: str, tenants_by_key: dict[str, str]) -> str | None:
    """The tenant owning `presented`, comparing in constant time so timing does not leak key prefixes."""
    found = None
    for key, tenant in tenants_by_key.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = tenant
    return found
