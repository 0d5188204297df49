"""config.json generation and RunConfig validation (pure: no runc, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.sandbox import (
    HOST_NETWORK,
    Mount,
    RunConfig,
    RuncSandbox,
    SandboxError,
    SecretMount,
    StepFailed,
    UnsupportedNetwork,
)
from obuilder_core.sandbox.config import CAPABILITIES, make_config
from obuilder_core.sandbox.seccomp import SYNC_SYSCALLS


def config_json(config: RunConfig, *, fast_sync: bool = False, nofile_hard: int = 4096) -> dict:
    return make_config(
        config,
        Path("/store/rootfs"),
        hosts_file=Path("/bundle/hosts"),
        secret_files=[Path(f"/bundle/secret-{i}") for i in range(len(config.secrets))],
        fast_sync=fast_sync,
        nofile_hard=nofile_hard,
        machine="x86_64",
    )


def test_reference_example() -> None:
    config = RunConfig(
        argv=("/usr/bin/env", "bash", "-c", "make"),
        cwd="/src",
        env=(("PATH", "/usr/bin:/bin"), ("HOME", "/home/opam")),
        user=(0, 0),
        network=HOST_NETWORK,
        mounts=(Mount(Path("/cache/c1"), "/home/opam/.opam/download-cache"),),
        secrets=(SecretMount("/run/secrets/token", b"s3cr3t-v4lue"),),
    )
    doc = config_json(config, fast_sync=True)
    process = doc["process"]
    assert process["args"] == ["/usr/bin/env", "bash", "-c", "make"]
    assert process["env"] == ["PATH=/usr/bin:/bin", "HOME=/home/opam"]
    assert process["cwd"] == "/src"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["capabilities"]["effective"] == CAPABILITIES
    assert process["noNewPrivileges"] is False
    assert doc["hostname"] == "builder"
    assert doc["root"] == {"path": "/store/rootfs", "readonly": False}
    assert [ns["type"] for ns in doc["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    binds = [(m["destination"], m["source"], m["options"]) for m in doc["mounts"][7:]]
    assert binds == [
        ("/etc/hosts", "/bundle/hosts", ["ro", "rbind", "rprivate"]),
        ("/etc/resolv.conf", "/etc/resolv.conf", ["ro", "rbind", "rprivate"]),
        ("/run/secrets/token", "/bundle/secret-0", ["rbind", "rprivate", "ro"]),
        ("/home/opam/.opam/download-cache", "/cache/c1", ["bind", "nosuid", "nodev"]),
    ]
    seccomp = doc["linux"]["seccomp"]
    assert seccomp["syscalls"][-1] == {
        "names": list(SYNC_SYSCALLS),
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": 0,
    }
    assert not set(SYNC_SYSCALLS) & set(_allowed(seccomp))  # one rule per syscall
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert b"s3cr3t-v4lue" not in repr(doc).encode()


def test_isolated_network_non_root_no_fast_sync() -> None:
    doc = config_json(RunConfig(argv=("true",), user=(1000, 100)), nofile_hard=512)
    assert doc["linux"]["namespaces"][0] == {"type": "network"}
    assert "/etc/resolv.conf" not in [m["destination"] for m in doc["mounts"]]
    assert set(SYNC_SYSCALLS) <= set(_allowed(doc["linux"]["seccomp"]))
    caps = doc["process"]["capabilities"]
    assert caps["bounding"] == CAPABILITIES
    assert caps["effective"] == caps["permitted"] == caps["inheritable"] == []
    # The soft limit is capped to the host's hard limit, or runc would refuse it.
    assert doc["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]


def test_mount_destinations_are_normalised() -> None:
    config = RunConfig(argv=("true",), mounts=(Mount(Path("/c"), "/a/./b/../c//d"),))
    assert config_json(config)["mounts"][-1]["destination"] == "/a/c/d"


def test_readonly_mount() -> None:
    config = RunConfig(argv=("true",), mounts=(Mount(Path("/c"), "/x", readonly=True),))
    assert config_json(config)["mounts"][-1]["options"] == ["ro", "bind", "nosuid", "nodev"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (RunConfig(argv=("true",), network=("foo",)),
         'Unsupported network configuration ["foo"] (use no network, or "host")'),
        (RunConfig(argv=("true",), network=("host", "x")),
         'Unsupported network configuration ["host"; "x"] (use no network, or "host")'),
        (RunConfig(argv=()), "cannot run an empty command"),
        (RunConfig(argv=("true",), cwd="src"), "working directory 'src' is not an absolute path"),
        (RunConfig(argv=("true",), mounts=(Mount(Path("/c"), "cache"),)),
         "cache mount target 'cache' is not an absolute path"),
        (RunConfig(argv=("true",), secrets=(SecretMount("token", b"v"),)),
         "secret target 'token' is not an absolute path"),
        (RunConfig(argv=("true",), env=(("A=B", "c"),)),
         "invalid environment variable name 'A=B'"),
    ],
)  # fmt: skip
def test_invalid_configs(config: RunConfig, message: str) -> None:
    with pytest.raises(SandboxError) as e:
        config.validate()
    assert str(e.value) == message
    if "network" in message:
        assert isinstance(e.value, UnsupportedNetwork)


def test_step_failed_messages() -> None:
    argv = ("/usr/bin/env", "bash", "-c", 'echo "a\\b"\n')
    assert str(StepFailed(argv, status=1)) == (
        '"/usr/bin/env" "bash" "-c" "echo \\"a\\\\b\\"\\n" failed with exit status 1'
    )
    assert str(StepFailed(("x",), signum=9)) == '"x" failed with signal SIGKILL'


def test_secret_value_not_in_repr() -> None:
    assert "hunter2" not in repr(SecretMount("/run/secrets/pw", b"hunter2"))


def test_missing_runc_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"^no-such-runc: command not found \(install runc\)$"):
        RuncSandbox(tmp_path / "state", runc="no-such-runc")


def _allowed(profile: dict) -> list[str]:
    """The syscalls a profile allows without looking at their arguments."""
    return [
        n
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
        for n in rule["names"]
    ]


def test_docker_default_capabilities() -> None:
    docker = """CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
                NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE"""
    assert sorted(CAPABILITIES) == sorted(f"CAP_{c}" for c in docker.split())


def test_every_step_gets_dockers_default_seccomp_profile() -> None:
    profile = config_json(RunConfig(argv=("true",)))["linux"]["seccomp"]
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    allowed = set(_allowed(profile))
    assert {"read", "write", "execve", "fork", "chroot", "ptrace", "arch_prctl"} <= allowed
    denied = {
        "unshare", "setns", "mount", "umount2", "fsopen", "keyctl", "add_key", "request_key",
        "bpf", "perf_event_open", "kexec_load", "kexec_file_load", "open_by_handle_at",
        "init_module", "finit_module", "delete_module", "reboot", "swapon", "acct",
        "settimeofday", "clock_settime", "userfaultfd", "io_uring_setup", "syslog",
    }  # fmt: skip
    named = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert not denied & named
    clone = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert clone == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in profile["syscalls"]
