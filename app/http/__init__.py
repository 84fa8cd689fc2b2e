"""The HTTP face of the service."""

from __future__ import annotations

from app.http.app import AppCore, create_app

__all__ = ["AppCore", "create_app"]
