"""The ImageSource contract and the image config every source returns.

An image source turns an image name (`busybox`, `debian:12`, `ghcr.io/x/y@sha256:...`) into a
root filesystem written into a directory the caller provides, plus the parts of the image config
a build step needs: its environment, working directory and user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from obuilder_core.errors import ObuilderError
from obuilder_core.log import Emit, Progress

"""Receives progress output (whole lines, ending in a newline) for the step log."""


class ImageError(ObuilderError):
    """Fetching or unpacking an image failed (bad layer, digest mismatch, malformed manifest)."""


class ImageNotFound(ImageError):
    """This source cannot provide the image (unknown name, no daemon, registry unreachable).

    The resolver then tries the next source. Raised before anything is written to the rootfs.
    """


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that a build uses.

    `env` keeps the image's order; `workdir` and `user` are None when the image leaves them unset.
    """

    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    user: str | None = None

    @classmethod
    def from_oci(cls, config: Mapping[str, Any], where: str) -> ImageConfig:
        """Read an OCI/docker image config JSON object (its `config` member holds Env etc.)."""
        inner = config.get("config") or config.get("Config") or {}
        if not isinstance(inner, dict):
            raise ImageError(f"{where}: image config is not a JSON object")
        return cls.from_container_config(inner, where)

    @classmethod
    def from_container_config(cls, inner: Mapping[str, Any], where: str) -> ImageConfig:
        """Read the container config object (`{"Env": [...], "WorkingDir": ..., "User": ...}`)."""
        return cls(
            env=parse_env(inner.get("Env") or [], where),
            workdir=inner.get("WorkingDir") or None,
            user=inner.get("User") or None,
        )

    def to_json(self) -> str:
        """Serialise for the step dir; `from_json` reads it back unchanged."""
        return json.dumps(
            {"env": [list(kv) for kv in self.env], "workdir": self.workdir, "user": self.user},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ImageConfig:
        """Inverse of `to_json`."""
        data = json.loads(text)
        return cls(
            env=tuple((k, v) for k, v in data.get("env", [])),
            workdir=data.get("workdir"),
            user=data.get("user"),
        )


def parse_env(entries: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Split `K=V` strings; an entry without `=` is an error (as in OBuilder's docker fetcher)."""
    if not isinstance(entries, list):
        raise ImageError(f"{where}: image config Env is not a list")
    env: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, str) or entry == "\n":
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ImageError(f"{where}: invalid environment entry {entry!r} (should be 'K=V')")
        env.append((key, value))
    return tuple(env)


class ImageSource(Protocol):
    """One place images come from: the local image store, a registry, the docker daemon."""

    @property
    def label(self) -> str:
        """How error messages name this source, e.g. "registry registry-1.docker.io"."""
        ...

    def fetch(
        self, name: str, rootfs: Path, log: Emit, progress: Progress | None = None
    ) -> ImageConfig:
        """Write image `name`'s filesystem into `rootfs` and return its config.

        `rootfs` is an existing empty directory. Raises ImageNotFound (before writing
        anything) when this source does not have the image or cannot be reached, and
        ImageError for any other failure; after an ImageError the caller must discard
        `rootfs`. `progress`, if given, gets the bytes downloaded so far, now and then (a
        source that downloads nothing may never call it)."""
        ...
