"""The names of a kb collection's two vectors, shared by the store and its search paths.

A module of its own so that the search paths (``app.store.edge_search``,
``app.store.client_search``) need not import the store that uses them; ``app.store.qdrant``
re-exports both names.
"""

from __future__ import annotations

__all__ = ["DENSE", "SPARSE"]

DENSE = "dense"
SPARSE = "lexical"
