/* A thread that escapes a tracer, then execs.
 *
 *   untraced_thread MARKER
 *       clone(CLONE_THREAD | CLONE_VM | ... | CLONE_UNTRACED) on its own stack;
 *       the new thread runs /usr/bin/touch MARKER with a raw execve and, if
 *       that fails, exits (the thread only). The main thread waits 200 ms and
 *       prints "exec RESULT" (the thread's raw execve return, -errno).
 *
 * A tracer that only sees what it is told about never follows that thread:
 * the ptrace backend must trap the clone anyway and clear the flag.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static char *argv_[3];
static char *envp_[1];
static volatile long result = 1;

static long raw3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static int thread_main(void *arg) {
    (void)arg;
    result = raw3(SYS_execve, (long)argv_[0], (long)argv_, (long)envp_);
    raw3(SYS_exit, 0, 0, 0);
    return 0;
}

static char stack[1 << 16] __attribute__((aligned(16)));

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    argv_[0] = "/usr/bin/touch";
    argv_[1] = argv[1];
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_UNTRACED;
    if (clone(thread_main, stack + sizeof stack, flags, NULL) < 0) {
        perror("clone");
        return 1;
    }
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    printf("exec %ld\n", result);
    return 0;
}
