"""The docker CLI as an image source: `docker create` + `docker export`, when a daemon answers."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound
from obuilder_core.images.layers import apply_layer
from obuilder_core.log import Emit, Progress
from obuilder_core.process import CommandError, run_cmd


@dataclass(frozen=True)
class DockerCLI:
    """An ImageSource using the local docker daemon (which pulls as it sees fit).

    Only used when `docker info` succeeds; otherwise `fetch` raises ImageNotFound("docker: no
    daemon") so the resolver can report it next to the other sources' reasons.
    """

    docker: str = "docker"
    label: str = field(default="docker", init=False)

    def available(self) -> bool:
        """True if the docker CLI is installed and its daemon answers."""
        try:
            proc = run_cmd([self.docker, "info", "--format", "{{.ServerVersion}}"], check=False)
        except ObuilderError:
            return False  # CLI not installed
        return proc.returncode == 0

    def fetch(
        self, name: str, rootfs: Path, log: Emit, progress: Progress | None = None
    ) -> ImageConfig:
        """ImageSource.fetch through `docker create` / `export` / `image inspect`."""
        if not self.available():
            raise ImageNotFound("docker: no daemon")
        log(f"fetching {name} with docker\n".encode())
        try:
            # A dummy command: images without CMD/ENTRYPOINT can still be created (never run).
            proc = run_cmd([self.docker, "create", "--", name, "true"])
        except CommandError as e:
            lines = e.stderr.strip().splitlines()
            raise ImageNotFound(f"docker: {lines[-1] if lines else e}") from None
        log(proc.stderr)
        cid = proc.stdout.decode().strip()
        try:
            with tempfile.TemporaryDirectory(prefix=".export-", dir=rootfs.parent) as tmp:
                tarball = Path(tmp) / "rootfs.tar"
                run_cmd([self.docker, "export", "-o", str(tarball), "--", cid])
                apply_layer(rootfs, tarball, where=f"docker image {name}")
        finally:
            run_cmd([self.docker, "rm", "--force", "--", cid], check=False)
        out = run_cmd([self.docker, "image", "inspect", "--format", "{{json .Config}}", "--", name])
        try:
            config = json.loads(out.stdout)
        except ValueError:
            raise ImageError(f"docker: cannot parse the config of image {name}") from None
        return ImageConfig.from_container_config(config or {}, f"docker image {name}")
