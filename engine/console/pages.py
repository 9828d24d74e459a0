"""The console's web pages: `/` (the single page, engine/console/static/index.html) and
`/static/...` (its script, styles and the vendored Leaflet), all from the package: no CDN,
a control room's console works offline.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections
only from this origin (no inline script, no eval), images from this origin, `data:` URIs
and, when the operator names a tile server (`serve --http-tiles URL`), that server's
origin. `--http-tiles DIR` serves a local directory of Z/X/Y.png tiles at `/tiles/` (an
offline control room's own tiles: same origin, nothing else allowed). The page may not be framed. Static files are revalidated
on every load (`no-cache`, with ETag/Last-Modified: a new engine never runs an old
script); the vendored Leaflet, versioned by its folder, is cached for a day."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import ConfigError

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Tiles:
    """The maps' tile layer: a template the page hands Leaflet, and a local directory to
    serve it from (None: a tile server's URL)."""

    template: str
    directory: Path | None = None

    @classmethod
    def parse(cls, given: str | None) -> Tiles | None:
        """`--http-tiles`: an existing directory, or an http(s) URL template with {z}, {x}
        and {y}; anything else is a ConfigError."""
        if not given:
            return None
        if Path(given).is_dir():
            return cls("/tiles/{z}/{x}/{y}.png", Path(given).resolve())
        if tile_origin(given) is None or not all(k in given for k in ("{z}", "{x}", "{y}")):
            raise ConfigError(
                f"--http-tiles {given!r}: not a directory, nor an http(s) URL template with"
                " {z}, {x} and {y} (e.g. https://tiles.example/{z}/{x}/{y}.png)"
            )
        return cls(given)


def tile_origin(url: str | None) -> str | None:
    """The CSP source for a Leaflet tile URL template (`https://{s}.tiles.example/{z}/{x}/{y}.png`
    → `https://*.tiles.example`); None for none, a relative URL (this origin) or nonsense."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.netloc.rpartition("@")[2]
    labels = ["*" if "{" in label else label for label in host.split(".")]
    if any(not label or any(c in label for c in "{}; '\"") for label in labels):
        return None
    return f"{parts.scheme}://{'.'.join(labels)}"


def policy(tiles: str | None = None) -> str:
    """The Content-Security-Policy of every page and asset."""
    img = " ".join(x for x in ("'self'", "data:", tile_origin(tiles)) if x)
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {img}; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class _Headers:
    """ASGI wrapper that adds headers to every response of `app`."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = {k for k, _ in self.raw}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + self.raw}
            await send(message)

        await self.app(scope, receive, sending)


def routes(tiles: Tiles | None = None) -> list[BaseRoute]:
    """`/` and `/static/...` (and `/tiles/...` for a local tile directory)."""
    common = {
        "Content-Security-Policy": policy(tiles.template if tiles else None),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    fresh = {**common, "Cache-Control": "no-cache"}
    vendor = {**common, "Cache-Control": "public, max-age=86400"}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=fresh)

    local = []
    if tiles is not None and tiles.directory is not None:
        local = [Mount("/tiles", app=_Headers(StaticFiles(directory=tiles.directory), vendor))]
    return [
        *local,
        Route("/", index, methods=["GET", "HEAD"]),
        Mount("/static/vendor", app=_Headers(StaticFiles(directory=STATIC / "vendor"), vendor)),
        Mount("/static", app=_Headers(StaticFiles(directory=STATIC), fresh)),
    ]
