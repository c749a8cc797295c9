/* isod.sandbox._notif: the seccomp user-notification hot path in C.
 *
 * receive() does everything the supervisor needs from the kernel while the
 * caller is held, with the GIL released: RECV, path, argv (process_vm_readv)
 * and cwd of an execve/execveat, clone_args.flags of a clone3, the caller's
 * tgid and ppid, then ID_VALID. send() answers; wait() polls the
 * supervisor's epoll fd for a few microseconds before it goes to sleep (a
 * caller that traps again at once is answered without a wake-up from idle).
 * Nothing here decides: the policy stays in Python (seccomp_backend.py),
 * which also has a pure-Python twin of receive() with the same results
 * (remote_memory.MemReader, /proc/TID/status; tests/sandbox/test_fastpath.py
 * compares them).
 *
 * tgid and ppid: reading /proc/TID/status costs ~25 us (the kernel formats
 * the whole file), pidfd_open + PIDFD_GET_INFO ~5 us, and PIDFD_GET_INFO on a
 * pidfd kept from an earlier call of the same thread <1 us. A PidCache keeps
 * a few such pidfds (one cache per listener; the owner clears it when the
 * tree is gone). Kernels without PIDFD_THREAD (6.9) or PIDFD_GET_INFO (6.13)
 * get /proc/TID/status.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 256        /* argv entries kept; more marks the read as cut */
#define MAX_ARG_LEN 4096    /* bytes per string kept; longer marks it as cut */
#define FIRST 256           /* bytes per argv string read in the first, batched read */
#define CACHE_SLOTS 16      /* pidfds a PidCache keeps (fds of this process) */

#define AUDIT_ARCH_X86_64 0xC000003EU
#define AUDIT_ARCH_I386 0x40000003U
#define ISOD_CLONE_THREAD 0x00010000ULL

/* x86_64 and i386 numbers of what receive() reads arguments for */
#define X64_EXECVE 59
#define X64_EXECVEAT 322
#define X64_CLONE 56
#define X64_PTRACE 101
#define I386_EXECVE 11
#define I386_EXECVEAT 358
#define I386_CLONE 120
#define I386_PTRACE 26
#define NR_CLONE3 435 /* same on both */
#define X64_SOCKET 41
#define I386_SOCKET 359
#define I386_SOCKETCALL 102 /* i386 only: its arguments are an array in memory */
#define SYS_SOCKET 1        /* socketcall's call number of socket() */

struct notif {              /* struct seccomp_notif */
    uint64_t id;
    uint32_t pid;
    uint32_t flags;
    int32_t nr;
    uint32_t arch;
    uint64_t ip;
    uint64_t args[6];
};
struct notif_resp {         /* struct seccomp_notif_resp */
    uint64_t id;
    int64_t val;
    int32_t error;
    uint32_t flags;
};
#define NOTIF_RECV _IOWR('!', 0, struct notif)
#define NOTIF_SEND _IOWR('!', 1, struct notif_resp)
#define NOTIF_ID_VALID _IOW('!', 2, uint64_t)

struct pidfd_info {         /* PIDFD_INFO_SIZE_VER0 */
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
#define PIDFD_INFO_PID 1ULL
#define PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidfd_info)
#define PIDFD_THREAD O_EXCL
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static size_t page;

static int as_int(PyObject *o, int *out) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit a C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}
static int no_pidfd_info;   /* set once the kernel says it lacks PIDFD_THREAD / GET_INFO */

/* --- PidCache ------------------------------------------------------------ */
typedef struct {
    PyObject_HEAD
    int busy;               /* a receive() uses it (GIL released): others go uncached */
    int tid[CACHE_SLOTS];
    int fd[CACHE_SLOTS];
} PidCache;

static void cache_clear_slots(PidCache *c) {
    for (int i = 0; i < CACHE_SLOTS; i++) {
        if (c->fd[i] >= 0) close(c->fd[i]);
        c->fd[i] = -1;
        c->tid[i] = 0;
    }
}

static PyObject *cache_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) != 0 || (kw != NULL && PyDict_GET_SIZE(kw) != 0)) {
        PyErr_SetString(PyExc_TypeError, "PidCache() takes no arguments");
        return NULL;
    }
    PidCache *c = (PidCache *)type->tp_alloc(type, 0);
    if (c == NULL) return NULL;
    for (int i = 0; i < CACHE_SLOTS; i++) c->fd[i] = -1;
    return (PyObject *)c;
}

static void cache_dealloc(PidCache *c) {
    cache_clear_slots(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *cache_clear(PidCache *c, PyObject *Py_UNUSED(ignored)) {
    if (!c->busy) cache_clear_slots(c);
    Py_RETURN_NONE;
}

static PyObject *cache_len(PidCache *c, PyObject *Py_UNUSED(ignored)) {
    int n = 0;
    for (int i = 0; i < CACHE_SLOTS; i++) n += c->fd[i] >= 0;
    return PyLong_FromLong(n);
}

static PyMethodDef cache_methods[] = {
    {"clear", (PyCFunction)cache_clear, METH_NOARGS, "Close every pidfd kept."},
    {"open_fds", (PyCFunction)cache_len, METH_NOARGS, "How many pidfds are kept."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PidCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "isod.sandbox._notif.PidCache",
    .tp_basicsize = sizeof(PidCache),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "pidfds of recent callers of one listener, for their tgid/ppid (see receive)",
    .tp_new = cache_new,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_methods = cache_methods,
};

/* --- the caller's ids ---------------------------------------------------- */
static int info_of(int pidfd, pid_t tid, int *tgid, int *ppid) {
    struct pidfd_info in;
    memset(&in, 0, sizeof in);
    in.mask = PIDFD_INFO_PID;
    if (ioctl(pidfd, PIDFD_GET_INFO, &in) < 0) return -errno;
    if ((pid_t)in.pid != tid) return -ESRCH;
    *tgid = (int)in.tgid;
    *ppid = (int)in.ppid;
    return 0;
}

/* 0: done; 1: ask /proc. */
static int ids_pidfd(PidCache *c, pid_t tid, int *tgid, int *ppid) {
    int slot = (int)((unsigned)tid % CACHE_SLOTS);
    if (c != NULL && c->fd[slot] >= 0) {
        if (c->tid[slot] == tid && info_of(c->fd[slot], tid, tgid, ppid) == 0) return 0;
        close(c->fd[slot]);   /* another thread, or this tid is a new task now */
        c->fd[slot] = -1;
    }
    int fd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    if (fd < 0) {
        if (errno == ESRCH) {          /* gone: as /proc would say */
            *tgid = tid;
            *ppid = 0;
            return 0;
        }
        if (errno == EINVAL || errno == ENOSYS) no_pidfd_info = 1;
        return 1;
    }
    int r = info_of(fd, tid, tgid, ppid);
    if (r == -ENOTTY || r == -EINVAL || r == -EOPNOTSUPP) {
        no_pidfd_info = 1;
        close(fd);
        return 1;
    }
    if (r < 0) {
        close(fd);
        if (r == -ESRCH) {
            *tgid = tid;
            *ppid = 0;
            return 0;
        }
        return 1;
    }
    if (c != NULL) {
        c->tid[slot] = tid;
        c->fd[slot] = fd;
    } else {
        close(fd);
    }
    return 0;
}

static void ids_proc(pid_t tid, int *tgid, int *ppid) {
    char path[48], buf[1024];
    *tgid = tid;
    *ppid = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    int t = 0;
    for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, "Tgid:", 5) == 0) {
            t = atoi(line + 5);
        } else if (strncmp(line, "PPid:", 5) == 0) {
            *ppid = atoi(line + 5);
            break;
        }
    }
    if (t) *tgid = t;
}

/* --- the caller's memory ------------------------------------------------- */
static ssize_t read_mem(pid_t pid, uint64_t addr, void *buf, size_t len) {
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0);
}

/* The C string at addr into out (MAX_ARG_LEN + 1 bytes), page by page: its
 * length, at most MAX_ARG_LEN (*cut set if it is longer); what was readable
 * if a page is not. */
static size_t read_str(pid_t pid, uint64_t addr, char *out, int *cut) {
    size_t got = 0;
    if (!addr) return 0;
    while (got < MAX_ARG_LEN + 1) {
        size_t want = page - addr % page;
        if (want > MAX_ARG_LEN + 1 - got) want = MAX_ARG_LEN + 1 - got;
        ssize_t n = read_mem(pid, addr, out + got, want);
        if (n <= 0) return got;
        char *z = memchr(out + got, 0, (size_t)n);
        if (z) return (size_t)(z - out);
        got += (size_t)n;
        addr += (uint64_t)n;
    }
    *cut = 1;
    return MAX_ARG_LEN;
}

struct arg {
    const char *p;
    size_t len;
};

struct execbuf {            /* what receive() read for an exec, until it has the GIL back */
    char cwd[4096];
    ssize_t cwd_len;
    int nstr;               /* 1 + argc: the path, then argv */
    struct arg s[MAX_ARGS + 1];
    char *heap[MAX_ARGS + 1];   /* strings longer than their first read */
    uint64_t addr[MAX_ARGS + 2];  /* the path, then the argv pointers (one more to see a cut) */
    int str_of[MAX_ARGS + 1];   /* iovec -> string */
    struct iovec local[MAX_ARGS + 1], remote[MAX_ARGS + 1];
    unsigned char raw[(MAX_ARGS + 1) * 8];
    char first[(MAX_ARGS + 1) * FIRST];
};

/* The path and argv of an exec. argv is an array of `wide`-byte pointers
 * ending in NULL: read page by page (at most MAX_ARGS + 1 of them). Then the
 * first FIRST bytes of the path and of every argv string in one
 * process_vm_readv (three syscalls for a usual exec), then the strings that
 * did not end there one by one. Each string comes out as read_str gives it. */
static void read_exec(pid_t pid, uint64_t path, uint64_t argv, int wide, struct execbuf *b, int *cut) {
    size_t have = 0, total = (size_t)(MAX_ARGS + 1) * (size_t)wide;
    int n = 0, ended = 0;
    uint64_t *ptrs = b->addr + 1;
    b->addr[0] = path;
    while (argv && have < total && !ended && n < MAX_ARGS + 1) {
        size_t want = page - (argv + have) % page;
        if (want > total - have) want = total - have;
        ssize_t r = read_mem(pid, argv + have, b->raw + have, want);
        if (r <= 0) break;
        have += (size_t)r;
        while ((size_t)(n + 1) * (size_t)wide <= have && n < MAX_ARGS + 1) {
            uint64_t p;
            if (wide == 8) {
                memcpy(&p, b->raw + (size_t)n * 8, 8);
            } else {
                uint32_t q;
                memcpy(&q, b->raw + (size_t)n * 4, 4);
                p = q;
            }
            if (!p) {
                ended = 1;
                break;
            }
            ptrs[n++] = p;
        }
    }
    if (n > MAX_ARGS) {
        n = MAX_ARGS;
        *cut = 1;
    }
    b->nstr = 1 + n;
    int k = 0;
    for (int i = 0; i < b->nstr; i++) {
        b->heap[i] = NULL;
        b->s[i].p = "";
        b->s[i].len = 0;
        if (!b->addr[i]) continue;          /* a NULL path: nothing to read */
        size_t ln = page - b->addr[i] % page;
        if (ln > FIRST) ln = FIRST;
        b->remote[k].iov_base = (void *)(uintptr_t)b->addr[i];
        b->remote[k].iov_len = ln;
        b->local[k].iov_base = b->first + (size_t)i * FIRST;
        b->local[k].iov_len = ln;
        b->str_of[k++] = i;
    }
    if (k == 0) return;
    ssize_t got = process_vm_readv(pid, b->local, (unsigned long)k, b->remote, (unsigned long)k, 0);
    size_t left = got > 0 ? (size_t)got : 0;
    int batched = 1;
    for (int j = 0; j < k; j++) {
        int i = b->str_of[j];
        size_t ln = b->local[j].iov_len;
        if (batched && left >= ln) {
            left -= ln;
            char *str = b->local[j].iov_base;
            char *z = memchr(str, 0, ln);
            if (z) {
                b->s[i].p = str;
                b->s[i].len = (size_t)(z - str);
                continue;
            }
        } else {
            batched = 0;   /* this one failed part-way (unmapped page): the rest one by one */
        }
        char *h = malloc(MAX_ARG_LEN + 1);
        if (h == NULL) {
            *cut = 1;
            continue;
        }
        b->heap[i] = h;
        b->s[i].p = h;
        b->s[i].len = read_str(pid, b->addr[i], h, cut);
    }
}

/* readlink /proc/TID/cwd: its length, or 0 if unreadable */
static ssize_t read_cwd(pid_t tid, char *buf, size_t size) {
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)tid);
    ssize_t n = readlink(path, buf, size);
    return n < 0 || (size_t)n >= size ? 0 : n;
}

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- receive / send ------------------------------------------------------ */
static PyObject *notif_receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "receive(listener_fd, cache=None)");
        return NULL;
    }
    int fd;
    if (as_int(args[0], &fd) < 0) return NULL;
    PidCache *cache = NULL;
    if (nargs == 2 && args[1] != Py_None) {
        if (!PyObject_TypeCheck(args[1], &PidCacheType)) {
            PyErr_SetString(PyExc_TypeError, "cache must be a PidCache or None");
            return NULL;
        }
        cache = (PidCache *)args[1];
        if (cache->busy) cache = NULL;
        else cache->busy = 1;
    }
    struct notif n;
    struct execbuf *b = NULL;
    int err = 0, valid = 0, cut = 0, tgid = 0, ppid = 0;
    uint64_t flags = 0;
    uint32_t net[3] = {0, 0, 0};   /* socket(): family, type, protocol */
    int64_t t0 = 0;

    Py_BEGIN_ALLOW_THREADS
    memset(&n, 0, sizeof n);
    if (ioctl(fd, NOTIF_RECV, &n) < 0) {
        err = errno;
    } else {
        t0 = monotonic_ns();
        pid_t tid = (pid_t)n.pid;
        int i386 = n.arch == AUDIT_ARCH_I386, known = i386 || n.arch == AUDIT_ARCH_X86_64;
        int wide = i386 ? 4 : 8;
        int execve = known && n.nr == (i386 ? I386_EXECVE : X64_EXECVE);
        int execveat = known && n.nr == (i386 ? I386_EXECVEAT : X64_EXECVEAT);
        int need_ids = 1;
        if (execve || execveat) {
            b = malloc(sizeof *b);
            if (b != NULL) {
                uint64_t path = execve ? n.args[0] : n.args[1];
                uint64_t argv = execve ? n.args[1] : n.args[2];
                read_exec(tid, path, argv, wide, b, &cut);
                b->cwd_len = read_cwd(tid, b->cwd, sizeof b->cwd);
            } else {
                cut = 1;
            }
            if (execveat) flags = n.args[4];
        } else if (!known) {
            /* nothing to read: the filter never lets another arch through */
        } else if (n.nr == NR_CLONE3) {
            uint64_t f = 0;
            if (n.args[0] && read_mem(tid, n.args[0], &f, 8) == 8) flags = f;
            need_ids = !(flags & ISOD_CLONE_THREAD);   /* a thread: answered ENOSYS, not recorded */
        } else if (n.nr == (i386 ? I386_CLONE : X64_CLONE) || n.nr == (i386 ? I386_PTRACE : X64_PTRACE)) {
            flags = n.args[0];                      /* clone: its flags; ptrace: the request */
        } else if (n.nr == (i386 ? I386_SOCKET : X64_SOCKET)) {
            net[0] = (uint32_t)n.args[0];           /* registers: what the kernel will use */
            net[1] = (uint32_t)n.args[1];
            net[2] = (uint32_t)n.args[2];
        } else if (i386 && n.nr == I386_SOCKETCALL) {
            flags = n.args[0];                      /* the call; its arguments, for the record only */
            uint32_t w[3];
            if (flags == SYS_SOCKET && n.args[1] && read_mem(tid, n.args[1], w, sizeof w) == sizeof w)
                memcpy(net, w, sizeof w);
        }
        if (need_ids) {
            /* while the caller is held: once answered it may exit at once */
            if (no_pidfd_info || ids_pidfd(cache, tid, &tgid, &ppid) != 0) ids_proc(tid, &tgid, &ppid);
            valid = ioctl(fd, NOTIF_ID_VALID, &n.id) == 0;
        } else {
            tgid = tid;
        }
    }
    Py_END_ALLOW_THREADS

    if (cache != NULL) cache->busy = 0;
    PyObject *out = NULL;
    if (err) {
        if (err == ENOENT || err == EINTR) Py_RETURN_NONE;   /* the caller went away first */
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *path = NULL, *argv = NULL, *cwd = NULL;
    if (b != NULL) {
        path = PyUnicode_DecodeFSDefaultAndSize(b->s[0].p, (Py_ssize_t)b->s[0].len);
        cwd = PyUnicode_DecodeFSDefaultAndSize(b->cwd, (Py_ssize_t)b->cwd_len);
        argv = path && cwd ? PyList_New(b->nstr - 1) : NULL;
        for (int i = 1; argv != NULL && i < b->nstr; i++) {
            PyObject *s = PyUnicode_DecodeFSDefaultAndSize(b->s[i].p, (Py_ssize_t)b->s[i].len);
            if (s == NULL) Py_CLEAR(argv);
            else PyList_SET_ITEM(argv, i - 1, s);
        }
        for (int i = 0; i < b->nstr; i++) free(b->heap[i]);
        free(b);
    } else {
        path = PyUnicode_FromStringAndSize("", 0);
        cwd = PyUnicode_FromStringAndSize("", 0);
        argv = PyList_New(0);
    }
    if (path != NULL && argv != NULL && cwd != NULL) {
        out = Py_BuildValue("(KIiiiINNNKOL(III))", (unsigned long long)n.id, (unsigned)n.pid, tgid, ppid,
                            (int)n.nr, (unsigned)n.arch, path, argv, cwd, (unsigned long long)flags,
                            (valid && !cut) ? Py_True : Py_False, (long long)t0,
                            (unsigned)net[0], (unsigned)net[1], (unsigned)net[2]);
        path = argv = cwd = NULL;   /* stolen (N) */
    }
    Py_XDECREF(path);
    Py_XDECREF(argv);
    Py_XDECREF(cwd);
    return out;
}

static PyObject *notif_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "send(listener_fd, id, error, flags)");
        return NULL;
    }
    int fd, error;
    if (as_int(args[0], &fd) < 0 || as_int(args[2], &error) < 0) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long fl = PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    struct notif_resp r = {id, 0, error, (uint32_t)fl};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ioctl(fd, NOTIF_SEND, &r);
    Py_END_ALLOW_THREADS
    if (rc == 0) Py_RETURN_TRUE;
    if (errno == ENOENT) Py_RETURN_FALSE;   /* the caller was interrupted or died: nothing to answer */
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *notif_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait(epoll_fd, spin_ns)");
        return NULL;
    }
    int epfd;
    if (as_int(args[0], &epfd) < 0) return NULL;
    long long spin = PyLong_AsLongLong(args[1]);
    if (spin == -1 && PyErr_Occurred()) return NULL;
    struct epoll_event ev[16];
    int n;
    Py_BEGIN_ALLOW_THREADS
    int64_t end = monotonic_ns() + spin;
    do {
        n = epoll_wait(epfd, ev, 16, 0);
    } while (n == 0 && monotonic_ns() < end);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        if (errno == EINTR) return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(n);
    for (int i = 0; out != NULL && i < n; i++) {
        /* select.epoll registers each fd with data.fd = fd */
        PyObject *t = Py_BuildValue("(iI)", ev[i].data.fd, (unsigned)ev[i].events);
        if (t == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, t);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"receive", (PyCFunction)(void (*)(void))notif_receive, METH_FASTCALL,
     "receive(listener_fd, cache=None) -> (id, tid, tgid, ppid, nr, arch, path, argv, cwd, flags, complete,"
     " t_recv_ns, (family, type, protocol)) or None if the caller went away.\n\nRECV one notification and read what the decision and the"
     " record need while the caller is held (GIL released). path/argv/cwd: execve/execveat, decoded as"
     " os.fsdecode; flags:"
     " clone/ptrace arg0, execveat arg4, clone3 clone_args.flags, i386 socketcall its call; family/type/protocol:"
     " socket()'s arguments (for socketcall(SYS_SOCKET) read from memory); complete: ID_VALID held and nothing was cut"
     " (256 args, 4096 bytes each). tgid/ppid are not read for a clone3 with CLONE_THREAD."},
    {"wait", (PyCFunction)(void (*)(void))notif_wait, METH_FASTCALL,
     "wait(epoll_fd, spin_ns) -> [(fd, events)]: what select.epoll.poll(0) gives, polled without blocking"
     " (GIL released) until something is ready or spin_ns have passed ([] then)."},
    {"send", (PyCFunction)(void (*)(void))notif_send, METH_FASTCALL,
     "send(listener_fd, id, error, flags) -> bool: SEND the answer; False if the caller is gone (ENOENT)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_notif", "The seccomp user-notification hot path (see seccomp_backend.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__notif(void) {
    long p = sysconf(_SC_PAGESIZE);
    page = p > 0 ? (size_t)p : 4096;
    if (PyType_Ready(&PidCacheType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PidCacheType);
    if (PyModule_AddObject(m, "PidCache", (PyObject *)&PidCacheType) < 0) {
        Py_DECREF(&PidCacheType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_ARGS", MAX_ARGS);
    PyModule_AddIntConstant(m, "MAX_ARG_LEN", MAX_ARG_LEN);
    return m;
}
