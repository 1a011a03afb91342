"""Process-wide registry of live ``PolicyRouter`` objects, read by the ingress's ``/v1/router`` endpoint.

It lives outside ``router.py`` on purpose: Ray Serve pickles the request-router module *by value*
(``RequestRouterConfig._serialize_request_router_cls``), so module globals there are private copies; this
module is imported by reference, so the router and the ingress of one process share it.
"""

from __future__ import annotations

import weakref
from typing import Any

ROUTERS: weakref.WeakSet[Any] = weakref.WeakSet()


def reports() -> list[dict[str, Any]]:
    """``report()`` of every router alive in this process."""
    return [r.report() for r in list(ROUTERS)]
