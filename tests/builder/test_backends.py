"""The same build on every store backend that runs here (rsync, btrfs, overlayfs, zfs)."""

from __future__ import annotations

from pathlib import Path

from tests.builder.helpers import collect, kill_leftovers, make_builder, ok, output, spec
from tests.fixtures.root import require_root, require_tool


def test_build_copy_and_cache_hits_on_each_backend(
    store_spec: str, busybox_oci: Path, tmp_path: Path
) -> None:
    require_root()
    require_tool("runc")
    (tmp_path / "f.txt").write_text("content\n")
    s = spec(
        "(copy (src f.txt) (dst /app/))",
        '(run (shell "cat /app/f.txt; echo $$ > /pid"))',
        '(run (cache (c (target /c))) (shell "echo x >> /c/n; wc -l < /c/n"))',
    )
    builder = make_builder(store_spec, busybox_oci)
    try:
        first_events, log1 = collect()
        first = ok(builder.build(s, tmp_path, log=log1))
        second_events, log2 = collect()
        second = ok(builder.build(s, tmp_path, log=log2))
        assert second.id == first.id and all(r.cached for r in second.steps)
        # Every step's log is replayed, but how the base image was unpacked.
        base_log = first.steps[0].log_path.read_bytes()  # type: ignore[union-attr]
        assert output(first_events) == base_log + output(second_events)
        assert output(second_events).endswith(b"content\n1\n")
        with builder.store.view(first.id or "") as step:
            assert (step / "rootfs" / "app" / "f.txt").read_text() == "content\n"
    finally:
        kill_leftovers(builder)
        builder.close()
