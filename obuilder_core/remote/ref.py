"""Registry cache references, `HOST[:PORT]/REPO` (light: the CLI checks them as it parses)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from obuilder_core.errors import ObuilderError

_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


@dataclass(frozen=True)
class CacheRef:
    """`HOST[:PORT]/REPO`: a repository of a registry."""

    host: str
    repository: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


def parse_cache_ref(text: str) -> CacheRef:
    """Parse `HOST[:PORT]/REPO`; ObuilderError saying what is expected otherwise."""
    host, _, repo = text.partition("/")
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not repo or not looks_like_host or not _REPO.fullmatch(repo) or "://" in text:
        raise ObuilderError(
            f"registry cache {text!r}: expected HOST[:PORT]/REPO (e.g. 127.0.0.1:5000/cache,"
            " ghcr.io/org/cache), REPO in lower case"
        )
    return CacheRef(host, repo)
