"""Caches of step results beyond the store's disk (an OCI registry), shared between machines."""

from obuilder_core.remote.base import Pulled, RemoteCache, RemoteError, RemoteUnreachable
from obuilder_core.remote.ref import CacheRef, parse_cache_ref
from obuilder_core.remote.registry_cache import RegistryCache

__all__ = [
    "CacheRef",
    "Pulled",
    "RegistryCache",
    "RemoteCache",
    "RemoteError",
    "RemoteUnreachable",
    "parse_cache_ref",
]
