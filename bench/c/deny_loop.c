/* Round trip of a trapped call, timed from the caller's side.
 *
 *   deny_loop N PATH
 *
 * Calls execve(PATH, {PATH, NULL}, {NULL}) N times, timing each call with
 * clock_gettime(CLOCK_MONOTONIC). Under `isod trace --size small` every call
 * is denied (EPERM); under `--size medium` with a PATH that does not exist
 * every call is allowed and fails in the kernel (ENOENT). Either way the
 * process keeps running. Prints one line:
 *
 *   n=N errno=NAME p50_ns=.. p90_ns=.. p99_ns=.. min_ns=.. max_ns=..
 *
 * and exits 0, or exits 3 if a call ever failed with another errno than the
 * first one (a call that succeeds replaces the process: no line at all).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s N PATH\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    if (n < 1) return 2;
    char *path = argv[2];
    char *args[] = {path, NULL};
    char *env[] = {NULL};
    uint64_t *lat = calloc((size_t)n, sizeof *lat);
    if (!lat) return 2;
    int first = 0;
    for (long i = 0; i < n; i++) {
        uint64_t t0 = now();
        execve(path, args, env);
        int e = errno;
        lat[i] = now() - t0;
        if (i == 0) first = e;
        else if (e != first) {
            fprintf(stderr, "call %ld: errno %d (%s), the first got %d\n", i, e, strerror(e), first);
            return 3;
        }
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("n=%ld errno=%s p50_ns=%llu p90_ns=%llu p99_ns=%llu min_ns=%llu max_ns=%llu\n", n,
           strerrorname_np(first) ? strerrorname_np(first) : "?",
           (unsigned long long)lat[n / 2], (unsigned long long)lat[n * 90 / 100],
           (unsigned long long)lat[n * 99 / 100], (unsigned long long)lat[0], (unsigned long long)lat[n - 1]);
    return 0;
}
