"""`Builder.export`: a build's result as a runnable OCI image, one layer per step.

The image of result `ID` has one layer per step of the chain from its base image up to `ID`,
each the step's change against its parent as `images.layer_writer` writes it: the same layer,
byte for byte, that the registry cache pushes for that step, so a registry holding both stores
each blob once. Its config carries the spec's final env, workdir and user (`User` is
`uid:gid`), the host's platform, and one history entry per layer named by the step's heading;
`created` is the epoch, so exporting the same result twice gives the same image digest.

The store keeps a step's files, not the settings a spec ended with (ops after the last
run/copy change no id), so every successful build records them for its result id, with the
headings of the chain (`result_records.remember`: `state/results/ID.json`). An id that no build
recorded (a result built before this existed, or an intermediate step) gets the base image's
env, workdir and user, with a warning. Where several specs end at the same id with different
final settings, the most recent build's are used; callers that hold the BuildResult pass its
settings instead (`settings=`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from obuilder_core.builder.result import FinalSettings
from obuilder_core.builder.result_records import recorded
from obuilder_core.builder.steps import read_image_config
from obuilder_core.errors import ObuilderError
from obuilder_core.images.base import ImageError
from obuilder_core.images.image_writer import (
    Layer,
    RegistryTarget,
    image_manifest,
    open_writer,
    parse_target,
)
from obuilder_core.images.layer_writer import write_layer
from obuilder_core.images.oci import host_platform, sha256_digest
from obuilder_core.index import Index
from obuilder_core.spec.model import UnixUser, User
from obuilder_core.stores import Store

logger = logging.getLogger(__name__)

EPOCH = "1970-01-01T00:00:00Z"
MAX_CHAIN = 100_000
"""More parents than any spec has steps: an index whose parents loop cannot hang an export."""


@dataclass(frozen=True)
class Exported:
    """What `Builder.export` wrote: where (`target`, normalised), the manifest's digest, how
    many layers, and whose settings the config carries (`build`: those of the spec's end;
    `base image`: none were recorded for the id)."""

    target: str
    digest: str
    layers: int
    settings_from: Literal["build", "base image"]


# -- exporting --------------------------------------------------------------------------------


def export_result(
    store: Store,
    index: Index,
    id: str,
    to: str,
    *,
    settings: FinalSettings | None = None,
    allow_http: bool = False,
) -> Exported:
    """Write result `id` as an image to `to` (see `images.image_writer`). The caller keeps
    `id` from pruning (and with it its parents). ObuilderError for a bad target, a step
    missing from the store, or a failed write or push."""
    target = parse_target(to)
    record = recorded(store.state_dir(), id)
    chain = record.chain if record is not None else _index_chain(index, id)
    for step_id, _ in chain:
        if store.result(step_id) is None:
            raise ObuilderError(f"step {step_id} of {id} is not in the store")
    chosen = settings or (record.settings if record is not None else None)
    if chosen is None:
        logger.warning(
            "no build recorded the final env, workdir and user of %s (built before export"
            " existed, or not the last step of a spec): the image gets its base image's",
            id,
        )
    with _scratch(store) as scratch, open_writer(target, scratch, allow_http=allow_http) as out:
        layers = []
        for i, (step_id, _) in enumerate(chain):
            parent = chain[i - 1][0] if i else None
            layer = _layer(store, step_id, parent, scratch / f"layer-{i}.tar.gz")
            layers.append(layer)
            out.add_layer(layer)
        config = _config(store, chain, layers, chosen)
        manifest = image_manifest(config, layers, {"dev.obuilder.step": id})
        out.finish(config, manifest)
    return Exported(
        target=str(target),
        digest=sha256_digest(manifest),
        layers=len(layers),
        settings_from="build" if chosen is not None else "base image",
    )


def _index_chain(index: Index, id: str) -> tuple[tuple[str, str], ...]:
    """(id, heading) up to `id` by the index's parents (headings unknown: the ids). A step
    whose parent the index lost (found by `reconcile`) starts the chain: its layer then holds
    its whole tree, and the image is still right."""
    chain: list[tuple[str, str]] = []
    current: str | None = id
    while current is not None and len(chain) < MAX_CHAIN:
        row = index.get(current)
        if row is None:
            raise ObuilderError(f"step {current} is not in the store index")
        chain.append((current, f"obuilder step {current}"))
        current = row.parent
    return tuple(reversed(chain))


def _layer(store: Store, id: str, parent: str | None, out: Path) -> Layer:
    """Step `id`'s change against `parent`, as the registry cache pushes it."""
    with contextlib.ExitStack() as held:
        upper = held.enter_context(store.view(id)) / "rootfs"
        lower = held.enter_context(store.view(parent)) / "rootfs" if parent else None
        info = write_layer(lower, upper, out)
    return Layer(out, info.digest, info.size, info.diff_id)


def _config(
    store: Store,
    chain: tuple[tuple[str, str], ...],
    layers: list[Layer],
    settings: FinalSettings | None,
) -> bytes:
    """The OCI image config: the platform, Env/WorkingDir/User, diff ids and history."""
    container: dict[str, Any]
    if settings is not None:
        container = {
            "Env": [f"{k}={v}" for k, v in settings.env],
            "WorkingDir": settings.workdir,
            "User": _user_string(settings.user),
        }
    else:
        base = store.result(chain[0][0])
        image = read_image_config(base) if base is not None else None
        container = {"Env": [f"{k}={v}" for k, v in image.env]} if image else {}
        if image and image.workdir:
            container["WorkingDir"] = image.workdir
        if image and image.user:
            container["User"] = image.user
    platform = host_platform()
    doc: dict[str, Any] = {
        "created": EPOCH,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": EPOCH, "created_by": heading, "comment": f"obuilder step {step_id}"}
            for step_id, heading in chain
        ],
    }
    if platform.variant:
        doc["variant"] = platform.variant
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _user_string(user: User) -> str:
    return f"{user.uid}:{user.gid}" if isinstance(user, UnixUser) else user.name


@contextlib.contextmanager
def _scratch(store: Store) -> Iterator[Path]:
    """A temporary dir on the store's filesystem for the layers being written."""
    root = store.state_dir() / "export"
    root.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tmp-", dir=root) as tmp:
        yield Path(tmp)


def check_target(text: str) -> str:
    """`text` if it names an export target (`images.image_writer`), else ObuilderError saying
    what is expected: for checking a command line before a store is opened."""
    parse_target(text)
    return text


# -- for the pytest plugin --------------------------------------------------------------------

_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_.-]+")


def tag_for(spec_name: str) -> str:
    """A registry tag naming a spec: its path relative to where the suite runs, without
    `.spec`, with `/` and other characters tags cannot hold as `-` (`debian/app.spec` gives
    `debian-app`); at most 128 characters."""
    stem = spec_name.removesuffix(".spec")
    tag = _NOT_IN_TAG.sub("-", stem).lstrip(".-")[:128].rstrip(".-")
    return tag or "spec"


def export_ref(repository: str, spec_name: str) -> str:
    """Where `--obuilder-export-to REPOSITORY` puts a passing spec's result:
    `REPOSITORY:TAG`, TAG from the spec's name (`tag_for`)."""
    return f"{check_export_repository(repository)}:{tag_for(spec_name)}"


def check_export_repository(text: str) -> str:
    """`HOST[:PORT]/REPO` (no tag: each spec gets its own) checked; ObuilderError saying
    what is expected otherwise."""
    untagged = ":" not in text.rsplit("/", 1)[-1] and "@" not in text
    try:
        target = parse_target(text) if untagged else None
    except ImageError:
        target = None
    if not isinstance(target, RegistryTarget):
        raise ObuilderError(
            f"export repository {text!r}: expected HOST[:PORT]/REPO without a tag (e.g."
            " 127.0.0.1:5000/results, ghcr.io/org/results)"
        )
    return text
