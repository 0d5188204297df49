"""End-to-end builds with runc on a real btrfs store: caching, logs, copy, keys, multi-stage."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from obuilder_core.builder import Builder
from tests.builder.helpers import collect, ok, output, spec, text
from tests.builder.wrappers import WAIT_FOR_GATE, ChangeBeforeCopy, Gate, GatedSandbox


def test_second_build_is_all_cache_hits_with_output_replayed(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    s = spec('(run (shell "echo built-$$; echo x > /a"))', '(run (shell "cat /a; echo two"))')
    first_events, log1 = collect()
    first = ok(btrfs_builder.build(s, tmp_path, log=log1))
    assert [r.cached for r in first.steps] == [False, False, False]
    second_events, log2 = collect()
    second = ok(btrfs_builder.build(s, tmp_path, log=log2))
    assert second.id == first.id
    assert [r.cached for r in second.steps] == [True, True, True]
    # Every step's output is replayed, except how the base image was unpacked long ago.
    base_log = first.steps[0].log_path.read_bytes()  # type: ignore[union-attr]
    assert b"applying layer" in base_log
    assert output(first_events) == base_log + output(second_events)
    assert b"built-" in output(second_events) and b"x\ntwo\n" in output(second_events)
    shown = text(second_events)
    assert "(from busybox)\nusing the base image from the cache\n" in shown
    assert '/: (run (shell "cat /a; echo two"))\n' in shown
    assert f'---> using "{second.id}" from cache\n' in shown
    assert f'---> saved as "{first.id}"' in text(first_events)
    assert btrfs_builder.stats() == (3, 3)
    assert second.steps[-1].log_path is not None
    assert second.steps[-1].log_path.read_bytes() == b"x\ntwo\n"


def test_failing_step_fails_and_reruns_next_time(btrfs_builder: Builder, tmp_path: Path) -> None:
    s = spec('(run (shell "echo ok"))', '(run (shell "echo attempt; exit 3"))')
    for _ in range(2):
        events, log = collect()
        result = btrfs_builder.build(s, tmp_path, log=log)
        assert result.failure is not None
        assert result.failure.message == (
            '"/bin/sh" "-c" "echo attempt; exit 3" failed with exit status 3'
        )
        assert result.failure.heading == '/: (run (shell "echo attempt; exit 3"))'
        assert result.failure.log == b"attempt\n"
        assert result.id is None
        assert output(events).endswith(b"attempt\n")
    # the base and the first run step were cached the second time, the failing one re-ran
    assert btrfs_builder.stats() == (2, 4)


def test_copy_reruns_only_when_content_or_mode_change(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("one\n")
    (ctx / "src" / "skip.log").write_text("ignored\n")
    s = spec(
        '(run (shell "echo before"))',
        "(copy (src src) (dst /app/) (exclude skip.log))",
        '(run (shell "cat /app/src/a.txt; ls /app/src; stat -c %a /app/src/a.txt"))',
    )
    events, log = collect()
    first = ok(btrfs_builder.build(s, ctx, log=log))
    assert output(events).endswith(b"one\na.txt\n644\n")

    def cached_flags() -> list[bool]:
        return [r.cached for r in ok(btrfs_builder.build(s, ctx)).steps]

    (ctx / "src" / "skip.log").write_text("changed, but excluded\n")
    assert cached_flags() == [True, True, True, True]
    (ctx / "src" / "a.txt").write_text("two\n")
    assert cached_flags() == [True, True, False, False]
    os.chmod(ctx / "src" / "a.txt", 0o755)
    events, log = collect()
    result = ok(btrfs_builder.build(s, ctx, log=log))
    assert [r.cached for r in result.steps] == [True, True, False, False]
    assert output(events).endswith(b"two\na.txt\n755\n")
    assert result.id != first.id


def _run_id(builder: Builder, ctx: Path, *ops: str, secrets: dict[str, bytes] | None = None) -> str:
    result = ok(builder.build(spec(*ops), ctx, secrets=secrets or {}))
    return result.steps[-1].id


def test_run_ids_depend_on_context_but_not_on_cache_mounts(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    cmd = '(run (shell "true"))'
    base = _run_id(btrfs_builder, tmp_path, cmd)
    variants = {
        "env": ["(env A b)", cmd],
        "workdir": ["(workdir /tmp)", cmd],
        "user": ["(user (uid 1000) (gid 1000))", cmd],
        "shell": ["(shell /bin/sh -e -c)", cmd],
        "network": ['(run (network host) (shell "true"))'],
    }
    ids = {name: _run_id(btrfs_builder, tmp_path, *ops) for name, ops in variants.items()}
    assert base not in ids.values() and len(set(ids.values())) == len(ids)
    secret = '(run (secrets (tok (target /run/tok))) (shell "cat /run/tok"))'
    s1 = _run_id(btrfs_builder, tmp_path, secret, secrets={"tok": b"one"})
    s2 = _run_id(btrfs_builder, tmp_path, secret, secrets={"tok": b"two"})
    assert s1 != s2 and base not in (s1, s2)
    cached = _run_id(btrfs_builder, tmp_path, '(run (cache (c1 (target /cache))) (shell "true"))')
    assert cached == base


def test_missing_secret_is_a_step_failure(btrfs_builder: Builder, tmp_path: Path) -> None:
    s = spec('(run (secrets (tok (target /run/tok))) (shell "cat /run/tok"))')
    result = btrfs_builder.build(s, tmp_path)
    assert result.failure is not None
    assert result.failure.message == "Couldn't find value for requested secret 'tok'"
    ok_result = ok(btrfs_builder.build(s, tmp_path, secrets={"tok": b"s3cret"}))
    log_path = ok_result.steps[-1].log_path
    assert log_path is not None and log_path.read_bytes() == b"s3cret"
    rootfs = btrfs_builder.store.result(ok_result.id or "")
    assert rootfs is not None and not (rootfs / "rootfs" / "run" / "tok").exists()


def test_context_rules_env_order_and_workdir(btrfs_builder: Builder, tmp_path: Path) -> None:
    s = spec(
        "(env A one)",
        "(env B two)",
        "(env A three)",
        "(workdir /w)",
        "(workdir sub)",
        "(run (shell \"pwd; env | grep -E '^(A|B|PATH)=' | sort\"))",
    )
    events, log = collect()
    ok(btrfs_builder.build(s, tmp_path, log=log))
    assert output(events).endswith(b"/w/sub\nA=three\nB=two\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n")
    assert "/w/sub: (run" in text(events)


def test_multi_stage_copy_from_build(btrfs_builder: Builder, tmp_path: Path) -> None:
    builds = (
        "(build tool ((from busybox) (shell /bin/sh -c)"
        ' (run (shell "mkdir -p /out && echo made-in-child > /out/thing"))))'
    )
    s = spec(
        "(copy (from (build tool)) (src /out/thing) (dst /thing))",
        '(run (shell "cat /thing"))',
        builds=builds,
    )
    events, log = collect()
    ok(btrfs_builder.build(s, tmp_path, log=log))
    assert output(events).endswith(b"made-in-child\n")
    shown = text(events)
    assert '(build "tool" \u2026)\n' in shown and '--> finished "tool"' in shown


def test_copy_through_planted_symlink_stays_in_rootfs(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    marker = "obuilder-escape-test"
    assert not Path("/etc", marker).exists()
    (tmp_path / marker).write_text("pwned\n")
    s = spec(
        '(run (shell "ln -s /etc /out"))',
        f"(copy (src {marker}) (dst /out/))",
        f'(run (shell "cat /etc/{marker}"))',
    )
    result = btrfs_builder.build(s, tmp_path)
    assert not Path("/etc", marker).exists()
    # tar resolved /out inside the container: the file is in the rootfs's /etc
    ok(result)
    step = btrfs_builder.store.result(result.id or "")
    assert step is not None and (step / "rootfs" / "etc" / marker).read_text() == "pwned\n"


def test_uncached_step_and_no_cache_rerun(btrfs_builder: Builder, tmp_path: Path) -> None:
    s = spec('(run (shell "echo setup"))', '(run (uncached) (shell "echo test-$$"))')
    first = ok(btrfs_builder.build(s, tmp_path))
    second = ok(btrfs_builder.build(s, tmp_path))
    assert [r.cached for r in second.steps] == [True, True, False]
    assert first.id != second.id
    third = ok(btrfs_builder.build(s, tmp_path, use_cache=False))
    assert [r.cached for r in third.steps] == [True, False, False]


def test_cache_mount_persists_between_steps_and_builds(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    add = '(run (cache (pkgs (target /var/cache/pkgs))) (shell "echo {} >> /var/cache/pkgs/seen"))'
    ok(btrfs_builder.build(spec(add.format("one")), tmp_path))
    events, log = collect()
    result = ok(
        btrfs_builder.build(
            spec(add.format("two"), '(run (cache (pkgs (target /c))) (shell "cat /c/seen"))'),
            tmp_path,
            log=log,
        )
    )
    assert output(events).endswith(b"one\ntwo\n")
    step = btrfs_builder.store.result(result.id or "")
    assert step is not None and not (step / "rootfs" / "c" / "seen").exists()


def test_prune_during_a_build_keeps_its_steps(btrfs_builder: Builder, tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    btrfs_builder.sandbox = GatedSandbox(btrfs_builder.sandbox, gate)
    first = ok(btrfs_builder.build(spec('(run (shell "echo parent"))'), tmp_path))
    events, log = collect()
    done: list[object] = []
    s = spec('(run (shell "echo parent"))', f'(run (shell "echo start; {WAIT_FOR_GATE}"))')
    t = threading.Thread(target=lambda: done.append(btrfs_builder.build(s, tmp_path, log=log)))
    t.start()
    while b"start" not in output(events):
        t.join(0.05)
    btrfs_builder.index.prune(float("inf"), 100)  # everything unused, but the build holds these
    gate.open()
    t.join()
    ok(done[0])  # type: ignore[arg-type]
    assert btrfs_builder.store.result(first.id or "") is not None


def test_a_source_changed_after_hashing_fails_the_copy(
    rsync_builder: Builder, tmp_path: Path
) -> None:
    # The real tar in busybox gets a stream cut short at the changed file: the step fails with
    # the reason, whatever tar makes of the stream, and nothing is cached.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_bytes(b"original\n")
    rsync_builder.store = ChangeBeforeCopy(rsync_builder.store, ctx / "f", b"Original\n")  # type: ignore[assignment]
    ok(rsync_builder.build(spec(), ctx))
    r = rsync_builder.build(spec("(copy (src f) (dst /f))"), ctx)
    assert r.failure is not None
    assert r.failure.message == 'Source file "f" changed during the copy; try again'
    assert rsync_builder.store.ids() == [r.steps[0].id]


def test_a_copy_reports_its_progress_to_the_build_that_runs_it(
    rsync_builder: Builder, tmp_path: Path
) -> None:
    (tmp_path / "big").write_bytes(b"x" * (3 << 20))
    s = spec("(copy (src big) (dst /big))")
    events, log = collect()
    first = ok(rsync_builder.build(s, tmp_path, log=log))
    sent = [int(e.data) for e in events if e.kind == "progress"]
    assert len(sent) >= 3 and sent == sorted(sent) and sent[-1] >= 3 << 20  # each MiB
    assert first.steps[-1].log_path is not None
    assert b"progress" not in first.steps[-1].log_path.read_bytes()  # never in the log
    again, log = collect()
    ok(rsync_builder.build(s, tmp_path, log=log))
    assert not [e for e in again if e.kind == "progress"]  # a cache hit sends nothing
