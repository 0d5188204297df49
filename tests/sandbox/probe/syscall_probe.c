/* syscall_probe: try syscalls a build step should not be able to make, print how each went.
 *
 * Built statically by tests/sandbox/test_seccomp.py and run inside the sandbox. Each line is
 * `NAME ok` or `NAME ERRNO-NAME`. Arguments are chosen so that without a seccomp filter the
 * kernel answers with something other than EPERM where it can (e.g. EFAULT for a bad pointer):
 * an EPERM then means the filter said no. Each syscall is tried in a child process of its
 * own, so one that succeeds (a new user namespace, say) does not change the next one.
 * Harmless even outside a sandbox: the mount target does not exist, kexec's flags are invalid.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    default: return strerror(e);
    }
}

static void report(const char *name, long rc) {
    if (rc >= 0)
        printf("%s ok\n", name);
    else
        printf("%s %s\n", name, errname(errno));
}

static void probe(const char *n) {
        long rc;
        if (!strcmp(n, "unshare-user")) rc = unshare(CLONE_NEWUSER);
        else if (!strcmp(n, "unshare-net")) rc = unshare(CLONE_NEWNET);
        else if (!strcmp(n, "keyctl")) rc = syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0);
        else if (!strcmp(n, "add_key"))
            rc = syscall(SYS_add_key, "user", "probe", "x", 1, -2 /* process keyring */);
        else if (!strcmp(n, "request_key"))
            rc = syscall(SYS_request_key, "user", "probe", NULL, 0);
        else if (!strcmp(n, "bpf")) rc = syscall(SYS_bpf, 0, NULL, 0);
        else if (!strcmp(n, "perf_event_open"))
            rc = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
        else if (!strcmp(n, "kexec_load")) rc = syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000);
        else if (!strcmp(n, "open_by_handle_at"))
            rc = syscall(SYS_open_by_handle_at, -1, NULL, 0);
        else if (!strcmp(n, "init_module")) rc = syscall(SYS_init_module, NULL, 0, "");
        else if (!strcmp(n, "mount"))
            rc = syscall(SYS_mount, "none", "/nonexistent-probe-target", "tmpfs", 0, NULL);
        else if (!strcmp(n, "userfaultfd")) rc = syscall(SYS_userfaultfd, 0);
        else if (!strcmp(n, "io_uring_setup")) rc = syscall(SYS_io_uring_setup, 1, NULL);
        else if (!strcmp(n, "clone3")) rc = syscall(SYS_clone3, NULL, 0);
        else if (!strcmp(n, "personality-addr-no-randomize"))
            rc = personality(ADDR_NO_RANDOMIZE) == -1 ? -1 : 0;
        else if (!strcmp(n, "chroot")) rc = chroot("/");
        else if (!strcmp(n, "getpid")) rc = getpid();
        else if (!strcmp(n, "euid")) {
            printf("euid %d\n", (int)geteuid());
            return;
        } else {
            printf("%s unknown\n", n);
            return;
        }
        report(n, rc);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            probe(argv[i]);
            fflush(stdout);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    }
    return 0;
}
