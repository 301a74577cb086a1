"""Cross-site request forgery: what a state-changing request must show when a browser could have
sent it on its own.

Owns the rule for POST, PUT, PATCH and DELETE requests whose credential is the session cookie
(the one credential a browser attaches by itself), and for the route that sets that cookie
(`POST /v1/auth/verify-code`: a forged login plants the attacker's session in the victim's
browser), whoever calls it:

- The request's Origin, else the origin of its Referer, must be the server's own (the scheme
  and host the client used, after `forwarded`) or one of ALLOWED_ORIGINS: otherwise 403.
  `Origin: null` and an unreadable Referer are foreign. A request with neither header comes
  from no browser (browsers send Origin with every such request), so it passes, unless its
  Sec-Fetch-Site says another site sent it.
- A body must be JSON (`Content-Type: application/json`): otherwise 415. A page on another
  site can post a form or text/plain without asking, but must ask (a CORS preflight, which this
  server never grants) to send JSON. A request without a body passes without a Content-Type
  (logout and mark-all-read as the Owlmetry dashboard sends them) or with one a browser must
  ask to send (an HTTP library's default application/octet-stream): it carries nothing but
  its URL, and the Origin check above covers it. Without a body, the three types a form or a
  plain `fetch` may send unasked (text/plain, application/x-www-form-urlencoded,
  multipart/form-data) are still a 415.

Bearer tokens and API keys are never checked (no browser sends them unasked). It decides from
the headers alone, before authentication; whether the cookie is valid is `auth`'s business.
"""

from aiohttp import web

from owlmetry.http.errors import ApiError
from owlmetry.http.login import COOKIE
from owlmetry.origins import origin_of

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
# Routes that set the session cookie, checked whatever the caller's credential.
SETS_SESSION = frozenset({"/v1/auth/verify-code"})
# What a browser sends to another origin without asking first (the Fetch standard's
# CORS-safelisted request content types).
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def rides_on_cookie(request: web.Request) -> bool:
    # As auth.identify reads credentials: the cookie counts only without an Authorization header.
    return "Authorization" not in request.headers and bool(request.cookies.get(COOKIE))


def sets_session(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in SETS_SESSION


def own_origin(request: web.Request) -> str | None:
    return origin_of(f"{request.scheme}://{request.host}")


def check_origin(request: web.Request, allowed: frozenset[str]) -> None:
    claimed = request.headers.get("Origin")
    if claimed is None:
        claimed = request.headers.get("Referer")
    if claimed is None:
        if request.headers.get("Sec-Fetch-Site") in FOREIGN_SITES:
            raise ApiError(403, "Cross-site request refused")
        return
    origin = origin_of(claimed)
    if origin is None:
        raise ApiError(403, "Cross-site request refused: the request's origin is opaque or "
                            "unreadable")
    if origin != own_origin(request) and origin not in allowed:
        raise ApiError(403, f"Cross-site request refused: {origin} is neither this server's "
                            "origin nor in ALLOWED_ORIGINS")


def check_content_type(request: web.Request) -> None:
    content_type = request.headers.get("Content-Type")
    media_type = content_type.partition(";")[0].strip().lower() if content_type is not None else None
    if media_type == JSON:
        return
    if request.body_exists or media_type in FORM_TYPES:
        raise ApiError(415, f"Content-Type must be {JSON}")


def same_origin_only(allowed: frozenset[str]):
    """The middleware, with the operator's ALLOWED_ORIGINS."""

    @web.middleware
    async def guard(request: web.Request, handler):
        if (request.method in UNSAFE_METHODS and request.match_info.http_exception is None
                and (rides_on_cookie(request) or sets_session(request))):
            check_origin(request, allowed)
            check_content_type(request)
        return await handler(request)

    return guard
