"""Caches of step results beyond the store's disk (an OCI registry), shared between machines.

The backend (`registry_cache.RegistryCache`) is imported only where one is used: a build
without `--cache-from`/`--cache-to` loads no HTTP client.
"""

from typing import TYPE_CHECKING

from obuilder_core.lazy import lazy_getattr
from obuilder_core.remote.base import Pulled, RemoteCache, RemoteError, RemoteUnreachable

# Parsing a cache reference is needed only where one is given.
__getattr__ = lazy_getattr(
    globals(),
    {"CacheRef": "obuilder_core.remote.ref", "parse_cache_ref": "obuilder_core.remote.ref"},
)

if TYPE_CHECKING:
    from obuilder_core.remote.ref import CacheRef, parse_cache_ref

__all__ = [
    "CacheRef",
    "Pulled",
    "RemoteCache",
    "RemoteError",
    "RemoteUnreachable",
    "parse_cache_ref",
]
