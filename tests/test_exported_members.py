"""The public surface is pinned: changing it is a deliberate act."""

from __future__ import annotations

import townhall
import townhall.auth
import townhall.spaces
import townhall.store


def test_packages_export_what_they_declare() -> None:
    for module in (townhall, townhall.auth, townhall.spaces, townhall.store):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_store_surface() -> None:
    assert set(townhall.store.__all__) == {
        "DuplicateError",
        "MemoryStore",
        "SqliteStore",
        "Store",
        "StoreError",
        "StoredSpace",
        "User",
        "VersionConflict",
    }


def test_auth_surface() -> None:
    assert {"Grant", "Keyring", "TokenClaims", "TokenError", "TokenIssuer"} <= set(
        townhall.auth.__all__
    )
