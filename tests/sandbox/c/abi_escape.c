/* Process creation through the other syscall ABIs of an x86_64 process.
 *
 *   abi_escape i386 CALL MARKER   CALL: fork vfork clone execve execveat
 *       makes the i386 syscall with `int 0x80` (fork 2, vfork 190, clone 120,
 *       execve 11, execveat 358); the exec ones run /usr/bin/touch MARKER.
 *   abi_escape x32 CALL MARKER    CALL: fork vfork clone execve execve64 execveat
 *       makes the x32 syscall (nr | 0x40000000) with syscall(2).
 *
 * Prints "CALL RESULT" with RESULT the raw return (-errno on failure) and
 * exits 0. Should a creation get through, the child creates MARKER and exits
 * at once, so the test sees it. Strings and the i386 argv (32-bit pointers)
 * live in a MAP_32BIT page: `int 0x80` only passes the low 32 bits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define X32 0x40000000L

static long int80(long nr, long a, long b, long c, long d, long e) {
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
                     : "memory", "cc", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15");
    return ret;
}

static const char *marker;

static void child_ran(void) {
    /* only raw syscalls: after a vfork we share the parent's memory */
    long fd = syscall(SYS_openat, AT_FDCWD, marker, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) syscall(SYS_close, fd);
    syscall(SYS_exit_group, 0);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s i386|x32 CALL MARKER\n", argv[0]);
        return 2;
    }
    const char *abi = argv[1], *call = argv[2];
    marker = argv[3];
    char *low = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) { perror("mmap"); return 2; }
    /* layout: path at 0, marker at 256, u32 argv at 4096, u64 argv at 4096+64 */
    char *path = low, *arg1 = low + 256;
    strcpy(path, "/usr/bin/touch");
    snprintf(arg1, 3000, "%s", marker);
    uint32_t *argv32 = (uint32_t *)(low + 4096);
    argv32[0] = (uint32_t)(uintptr_t)path;
    argv32[1] = (uint32_t)(uintptr_t)arg1;
    argv32[2] = 0;
    char **argv64 = (char **)(low + 4096 + 64);
    argv64[0] = path; argv64[1] = arg1; argv64[2] = NULL;
    uint32_t env32 = 0;
    char *env64[] = {NULL};
    (void)env64;

    long r;
    if (strcmp(abi, "i386") == 0) {
        long p = (long)(uintptr_t)path, a = (long)(uintptr_t)argv32;
        if (!strcmp(call, "fork")) r = int80(2, 0, 0, 0, 0, 0);
        else if (!strcmp(call, "vfork")) r = int80(190, 0, 0, 0, 0, 0);
        else if (!strcmp(call, "clone")) r = int80(120, SIGCHLD, 0, 0, 0, 0);
        else if (!strcmp(call, "execve")) r = int80(11, p, a, 0, 0, 0);
        else if (!strcmp(call, "execveat")) r = int80(358, AT_FDCWD, p, a, 0, 0);
        else { fprintf(stderr, "unknown call %s\n", call); return 2; }
    } else if (strcmp(abi, "x32") == 0) {
        if (!strcmp(call, "fork")) r = syscall(X32 | 57);
        else if (!strcmp(call, "vfork")) r = syscall(X32 | 58);
        else if (!strcmp(call, "clone")) r = syscall(X32 | 56, SIGCHLD, 0, 0, 0, 0);
        else if (!strcmp(call, "execve")) r = syscall(X32 | 520, path, argv64, env64);
        else if (!strcmp(call, "execve64")) r = syscall(X32 | 59, path, argv64, env64);
        else if (!strcmp(call, "execveat")) r = syscall(X32 | 545, AT_FDCWD, path, argv64, env64, 0);
        else { fprintf(stderr, "unknown call %s\n", call); return 2; }
        if (r == -1) r = -errno;
    } else {
        fprintf(stderr, "unknown abi %s\n", abi);
        return 2;
    }
    (void)env32;
    if (r == 0) child_ran();                   /* we are the child of a fork that got through */
    if (r > 0) waitpid((pid_t)r, NULL, __WALL); /* the parent of one */
    printf("%s %ld\n", call, r);
    return 0;
}
