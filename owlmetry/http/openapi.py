"""GET /openapi.json: the API reference, `openapi.json` beside this module, as clients fetch it.

Owns serving the document: read once, `info.version` set to `owlmetry.__version__` (the one
place the version is written), kept as bytes. The document itself is hand-written and is the
source of truth; this module must not build or change any of its contents beyond the version.
tests/http/test_openapi.py holds every route's real answers to it.
"""

import json
from functools import cache
from importlib import resources

from aiohttp import web

import owlmetry

PATH = "/openapi.json"


def document() -> dict:
    """The reference as shipped in the package, with the running server's version."""
    spec = json.loads(resources.files(__package__).joinpath("openapi.json").read_bytes())
    spec["info"]["version"] = owlmetry.__version__
    return spec


@cache
def document_bytes() -> bytes:
    return json.dumps(document(), ensure_ascii=False, indent=2).encode()


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


routes = [web.get(PATH, serve, allow_head=False)]
