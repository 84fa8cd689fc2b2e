"""The web UI: the ``<kb-ask>`` widget script, and the full-page UI at ``/`` built from it.

The files live in ``app/web/``, inside the package, so the wheel carries them; they are read when
an app is built, never at import time. Each is served at a fingerprinted URL
(``/widget.<digest>.js``) whose content never changes, cached for a year as ``immutable``.
``/widget.js`` is the stable name host pages embed: cached briefly and revalidated by its ETag,
so a new release reaches them soon without a stale copy lingering. The page at ``/`` refers to
the fingerprinted URLs only and is revalidated on every load.

Every response says ``X-Content-Type-Options: nosniff``. The page carries a Content-Security-Policy
that allows this origin's own script, styles, icon and ``/ask``, and nothing inline. Clients that
accept gzip get bytes compressed once, when the app is built.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_304_NOT_MODIFIED

__all__ = ["PAGE_CSP", "Asset", "WebAssets", "ui_routes"]

PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300, must-revalidate"
REVALIDATE = "no-cache"

_MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
_PLACEHOLDER = re.compile(r"\{\{([\w.-]+)\}\}")


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, compressed once, and the digest its URL carries."""

    name: str
    media_type: str
    body: bytes
    gzipped: bytes
    digest: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        return cls(
            name=name,
            media_type=_MEDIA_TYPES[Path(name).suffix],
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            digest=hashlib.sha256(body).hexdigest()[:16],
        )

    @property
    def url(self) -> str:
        """The fingerprinted path: ``/widget.<digest>.js``."""
        stem, _, suffix = self.name.rpartition(".")
        return f"/{stem}.{self.digest}.{suffix}"

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@dataclass(frozen=True, slots=True)
class WebAssets:
    """The widget, the files the page needs, and the page with their fingerprinted URLs."""

    widget: Asset
    page: Asset
    linked: tuple[Asset, ...]
    """What the page links to besides the widget (its stylesheet, its icon)."""

    @classmethod
    def load(cls, directory: Path | None = None) -> WebAssets:
        """Read ``app/web/`` (or ``directory``), fingerprint the files and fill in the page."""
        folder = directory or Path(__file__).resolve().parent.parent / "web"
        widget = Asset.of("widget.js", (folder / "widget.js").read_bytes())
        linked = tuple(Asset.of(name, (folder / name).read_bytes()) for name in ("page.css", "icon.svg"))
        urls = {asset.name: asset.url for asset in (widget, *linked)}

        def url_of(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in urls:
                raise ValueError(f"index.html refers to {{{{{name}}}}}, which is not a web asset")
            return urls[name]

        html = _PLACEHOLDER.sub(url_of, (folder / "index.html").read_text(encoding="utf-8"))
        return cls(widget=widget, page=Asset.of("index.html", html.encode()), linked=linked)


def ui_routes(assets: WebAssets) -> list[HTTPRouteHandler]:
    """``/``, ``/widget.js`` and every fingerprinted URL; none of them is part of the API schema."""
    page_headers = {"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"}
    # The script may be loaded with ``crossorigin`` (for Subresource Integrity) from host pages.
    script_headers = {"Access-Control-Allow-Origin": "*"}
    routes = [
        _route("/", "ui_page", assets.page, REVALIDATE, page_headers),
        _route("/widget.js", "ui_widget", assets.widget, SHORT, script_headers),
        _route(assets.widget.url, "ui_widget_versioned", assets.widget, IMMUTABLE, script_headers),
    ]
    routes += [_route(asset.url, f"ui_{asset.name}", asset, IMMUTABLE, {}) for asset in assets.linked]
    return routes


def _route(
    path: str, name: str, asset: Asset, cache_control: str, extra: Mapping[str, str]
) -> HTTPRouteHandler:
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        **extra,
    }

    def serve(request: Request[Any, Any, Any]) -> Response[bytes]:
        return _response(request, asset, headers)

    return get(path, name=name, include_in_schema=False, sync_to_thread=False)(serve)


def _response(request: Request[Any, Any, Any], asset: Asset, headers: dict[str, str]) -> Response[bytes]:
    if _etags(request.headers.get("if-none-match", "")) & {asset.etag, "*"}:
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        return Response(
            asset.gzipped, media_type=asset.media_type, headers={**headers, "Content-Encoding": "gzip"}
        )
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _accepts_gzip(header: str) -> bool:
    """``gzip`` (or ``*``) in ``Accept-Encoding`` with a non-zero quality."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip()
            return not (params.strip().startswith("q=") and _is_zero(quality))
    return False


def _is_zero(quality: str) -> bool:
    try:
        return float(quality) == 0
    except ValueError:
        return False
