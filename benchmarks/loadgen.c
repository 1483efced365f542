/*
 * benchmarks/loadgen.c: the open-loop load generator of benchmarks/loadgen.py, compiled.
 *
 *   loadgen open --port P --rate R --seconds S [--warmup W] [--mode keepalive|close]
 *                [--connections 8] [--max-connections 256] [--timeout 5] [--host 127.0.0.1]
 *                [--watch-pid PID] [--batch-us 0]
 *
 * prints one JSON object on stdout, with the fields of loadgen.py's `summarize` and more
 * (see print_result). The harness builds it with `cc -O2` at first use (benchmarks/cgen.py).
 *
 * How a run goes
 *  1. Request i is scheduled at start + i / rate, whatever happened to the requests before
 *     it. Its latency runs from that scheduled time to the arrival of its response's last
 *     byte, so a server that stalls shows the stall on every request scheduled during it,
 *     and so does any wait for a free connection (no coordinated omission).
 *  2. The arrival of a response is the kernel's receive timestamp of its last byte
 *     (SO_TIMESTAMPNS, taken when the packet reached the socket), not the moment this
 *     program read it. So responses need not be read as they arrive: the generator sleeps
 *     until the next scheduled send (clock_nanosleep), then collects every response that came
 *     in meanwhile (epoll_wait with no timeout), then sends what is due. One wake-up per
 *     request instead of two, and its own wake-up delay is not in any latency.
 *  3. Keep-alive mode: a pool of connections (--connections opened first, up to
 *     --max-connections, 256). A request takes the connection free the longest, else opens
 *     one, else waits in line for one. While any request waits (or a connection is being set
 *     up) the generator wakes for every event, so a freed connection is used at once.
 *     Close mode: a new connection per request, `Connection: close`; the response counts
 *     when the server has also closed the connection, and its latency ends with its last
 *     byte (the FIN carries no timestamp: how long after the data it was seen is reported).
 *     At most --max-connections (4096 here) are open at once, the rest wait in line: a
 *     server far behind would otherwise hold so many that connect() crawls through the
 *     ephemeral ports in use (3 ms a call with 15 000 open, measured) and the generator
 *     falls behind its own schedule.
 *     --timing read: instead, wake for every response and time it when read, as a client in
 *     user space sees it (to compare with generators that do; it costs a wake-up more).
 *  4. --batch-us B: the schedule itself is batched: request i is due at the first multiple
 *     of B after start + i / rate, and its latency runs from then. One wake-up per B instead
 *     of one per request; still open loop, but the server sees bursts. The precise schedule
 *     (B = 0) is the default.
 *  5. Latencies go into a log-linear histogram (HdrHistogram's layout: exact below 2048 ns,
 *     then 1024 buckets per power of two, under 0.1 % error); percentiles are nearest-rank.
 *  6. Measured over the recorded window (from the first recorded send to the last
 *     response): this process's CPU (getrusage); the watched server's CPU and the time its
 *     threads were runnable but not running (/proc/PID/stat and /proc/PID/task/ * /schedstat,
 *     the process and its descendants); this process's own run delay; the hypervisor's
 *     steal (/proc/stat) and the machine's CPU pressure (/proc/pressure/cpu).
 *
 * Linux only (epoll, epoll_pwait2: 5.11 or later); no dependency beyond libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL
#define MS 1000000LL
/* A response of the benchmark endpoint is about 200 bytes; room for much more. */
#define BUFFER_SIZE 8192
/* Requests that time out are looked for this often, not at every wake-up. */
#define TIMEOUT_SCAN_NS (10 * MS)
/* epoll_wait collects at most this many ready sockets per call (it is called again if full). */
#define EVENTS 1024
#define MAX_ERROR_KINDS 16

static void die(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(2);
}

static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* ---- the histogram ------------------------------------------------------------------- */

/* Values in ns. Below 2 * SUB (2048 ns) one bucket per ns; above, a value with its highest bit
 * at position m keeps its top PRECISION + 1 bits: 1024 buckets per power of two. */
#define PRECISION 10
#define SUB (1 << PRECISION)
#define TOP_BIT 40 /* values up to 2^40 ns (18 minutes); larger ones are clamped */
#define BUCKETS (SUB * (TOP_BIT - PRECISION + 1))

typedef struct {
    uint64_t counts[BUCKETS];
    uint64_t total;
    int64_t max;
} Histogram;

static int bucket_of(int64_t value) {
    if (value < 0) value = 0;
    if (value >= (1LL << TOP_BIT)) value = (1LL << TOP_BIT) - 1;
    if (value < 2 * SUB) return (int)value;
    int shift = 63 - __builtin_clzll((uint64_t)value) - PRECISION;
    return SUB * shift + (int)(value >> shift);
}

/* The highest value that falls in `bucket` (HdrHistogram's "highest equivalent value"). */
static int64_t bucket_top(int bucket) {
    if (bucket < 2 * SUB) return bucket;
    int shift = bucket / SUB - 1;
    int64_t mantissa = bucket - (int64_t)SUB * shift;
    return ((mantissa + 1) << shift) - 1;
}

static void record(Histogram *h, int64_t value) {
    h->counts[bucket_of(value)]++;
    h->total++;
    if (value > h->max) h->max = value;
}

/* Nearest rank: the smallest value with at least ceil(p/100 * n) values at or below it. */
static int64_t percentile(const Histogram *h, double p) {
    if (h->total == 0) return -1;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int b = 0; b < BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            int64_t top = bucket_top(b);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

/* ---- settings ------------------------------------------------------------------------ */

typedef enum { KEEPALIVE, CLOSE } Mode;

typedef struct {
    const char *host;
    int port;
    double rate;
    double seconds;
    double warmup;
    Mode mode;
    int connections;
    int max_connections;
    double timeout;
    int watch_pid;
    int64_t batch_ns;
    bool read_timing; /* --timing read: latency ends when this program read the response */
} Settings;

static void usage(void) {
    die("usage: loadgen open --port P --rate R --seconds S [--warmup W] "
        "[--mode keepalive|close] [--connections N] [--max-connections N] [--timeout S] "
        "[--host H] [--watch-pid PID] [--batch-us B] [--timing kernel|read]");
}

static double number(const char *name, const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || !isfinite(value) || value < 0)
        die("--%s: not a non-negative number: %s", name, text);
    return value;
}

static Settings parse(int argc, char **argv) {
    Settings s = {.host = "127.0.0.1", .warmup = 0.5, .mode = KEEPALIVE, .connections = 8,
                  .max_connections = -1, .timeout = 5.0, .port = -1, .rate = -1, .seconds = -1};
    if (argc < 2 || strcmp(argv[1], "open") != 0) usage();
    for (int i = 2; i < argc; i += 2) {
        if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) usage();
        const char *name = argv[i] + 2, *value = argv[i + 1];
        if (!strcmp(name, "host")) s.host = value;
        else if (!strcmp(name, "port")) s.port = (int)number(name, value);
        else if (!strcmp(name, "rate")) s.rate = number(name, value);
        else if (!strcmp(name, "seconds")) s.seconds = number(name, value);
        else if (!strcmp(name, "warmup")) s.warmup = number(name, value);
        else if (!strcmp(name, "connections")) s.connections = (int)number(name, value);
        else if (!strcmp(name, "max-connections")) s.max_connections = (int)number(name, value);
        else if (!strcmp(name, "timeout")) s.timeout = number(name, value);
        else if (!strcmp(name, "watch-pid")) s.watch_pid = (int)number(name, value);
        else if (!strcmp(name, "batch-us")) s.batch_ns = (int64_t)(number(name, value) * 1000);
        else if (!strcmp(name, "timing")) {
            if (!strcmp(value, "read")) s.read_timing = true;
            else if (strcmp(value, "kernel")) die("--timing: kernel or read, not %s", value);
        } else if (!strcmp(name, "mode")) {
            if (!strcmp(value, "keepalive")) s.mode = KEEPALIVE;
            else if (!strcmp(value, "close")) s.mode = CLOSE;
            else die("--mode: keepalive or close, not %s", value);
        } else die("unknown option --%s", name);
    }
    if (s.port < 0 || s.rate <= 0 || s.seconds < 0) usage();
    if (s.max_connections < 0) s.max_connections = s.mode == CLOSE ? 4096 : 256;
    if (s.max_connections < 1) die("--max-connections: at least 1");
    if (s.connections > s.max_connections) s.connections = s.max_connections;
    return s;
}

/* ---- connections --------------------------------------------------------------------- */

typedef enum { FREE, CONNECTING, IDLE, BUSY, DONE } State;

typedef struct Conn {
    int fd;
    State state;
    int slot;           /* index in Run.conns while open */
    int64_t scheduled;  /* the request in flight: when it was due */
    bool measured;      /* ... and whether it is recorded (not warm-up) */
    bool closing;       /* the server said Connection: close */
    int status;         /* close mode: the complete response's status, waiting for the FIN */
    int64_t arrived;    /* ... and its last byte's receive timestamp (monotonic ns) */
    int64_t data_ts;    /* receive timestamp of the latest bytes read */
    size_t length;
    char buffer[BUFFER_SIZE];
} Conn;

typedef struct {
    int64_t scheduled;
    bool measured;
} Waiting;

typedef struct {
    const char *name;
    uint64_t count;
} ErrorKind;

typedef struct {
    Settings settings;
    struct sockaddr_in address;
    char request[256];
    size_t request_length;
    int epoll;
    /* every open connection, for the timeout scan */
    Conn **conns;
    int open, conns_cap;
    /* closed connections kept for reuse: spare[0, reusable) were closed before the current
     * epoll_wait batch; the rest during it, and that batch may still name them */
    Conn **spare;
    int spare_count, spare_cap, reusable;
    /* keep-alive pool: idle connections oldest first (a ring); the requests waiting */
    Conn **idle;
    int idle_head, idle_count;
    int live; /* connections open or being opened, at most max_connections */
    Waiting *waiting;
    size_t waiting_head, waiting_count, waiting_cap;
    int connecting;
    /* what happened */
    uint64_t sent, ok, in_flight, opened, wakeups;
    ErrorKind errors[MAX_ERROR_KINDS];
    int error_kinds;
    Histogram latency, lag, fin_after_data;
    int64_t last_done;
    int64_t realtime_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC, for the receive timestamps */
} Run;

static void count_error(Run *run, const char *name, bool measured) {
    if (!measured) return;
    for (int i = 0; i < run->error_kinds; i++) {
        if (!strcmp(run->errors[i].name, name)) {
            run->errors[i].count++;
            return;
        }
    }
    if (run->error_kinds == MAX_ERROR_KINDS) name = "other";
    else run->error_kinds++;
    run->errors[run->error_kinds - 1] = (ErrorKind){name, 1};
}

static void finish(Run *run, int64_t scheduled, bool measured, int status, int64_t arrived) {
    run->in_flight--;
    if (!measured) return;
    int64_t now = now_ns();
    if (now > run->last_done) run->last_done = now;
    if (status == 200) {
        run->ok++;
        record(&run->latency, arrived - scheduled);
        return;
    }
    static const char *const names[] = {"status 1xx", "status 2xx", "status 3xx",
                                        "status 4xx", "status 5xx"};
    count_error(run, status >= 100 && status < 600 ? names[status / 100 - 1] : "status ?", true);
}

static void fail(Run *run, bool measured, const char *kind) {
    run->in_flight--;
    if (!measured) return;
    int64_t now = now_ns();
    if (now > run->last_done) run->last_done = now;
    count_error(run, kind, true);
}

static Conn *new_conn(Run *run) {
    Conn *conn;
    if (run->reusable) {
        conn = run->spare[--run->reusable];
        run->spare[run->reusable] = run->spare[--run->spare_count];
    } else if (!(conn = malloc(sizeof(Conn)))) {
        die("out of memory");
    }
    conn->length = 0;
    conn->closing = false;
    conn->status = 0;
    conn->data_ts = 0;
    if (run->open == run->conns_cap) {
        run->conns_cap = run->conns_cap ? 2 * run->conns_cap : 1024;
        run->conns = realloc(run->conns, sizeof(Conn *) * (size_t)run->conns_cap);
        if (!run->conns) die("out of memory");
    }
    conn->slot = run->open;
    run->conns[run->open++] = conn;
    return conn;
}

static void drop(Run *run, Conn *conn) {
    close(conn->fd); /* also takes it out of the epoll set */
    if (conn->state == CONNECTING) run->connecting--;
    conn->state = FREE;
    Conn *last = run->conns[--run->open];
    last->slot = conn->slot;
    run->conns[conn->slot] = last;
    if (run->spare_count == run->spare_cap) {
        run->spare_cap = run->spare_cap ? 2 * run->spare_cap : 256;
        run->spare = realloc(run->spare, sizeof(Conn *) * (size_t)run->spare_cap);
        if (!run->spare) die("out of memory");
    }
    run->spare[run->spare_count++] = conn;
}

/* A new connection, being connected (nonblocking: on loopback a send right after the
 * connect call succeeds, the handshake having completed within it). NULL if it failed. */
static Conn *open_conn(Run *run) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as asyncio does */
    if (connect(fd, (struct sockaddr *)&run->address, sizeof run->address) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return NULL;
    }
    Conn *conn = new_conn(run);
    conn->fd = fd;
    conn->state = CONNECTING;
    run->connecting++;
    run->opened++;
    struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = conn};
    if (epoll_ctl(run->epoll, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl: %s", strerror(errno));
    return conn;
}

/* Send the request on `conn` (CONNECTING or IDLE). False if the socket failed. */
static bool send_request(Run *run, Conn *conn, int64_t scheduled, bool measured) {
    conn->scheduled = scheduled;
    conn->measured = measured;
    conn->length = 0;
    ssize_t written = send(conn->fd, run->request, run->request_length, MSG_NOSIGNAL);
    if (written == (ssize_t)run->request_length) {
        if (conn->state == CONNECTING) run->connecting--;
        conn->state = BUSY;
        return true;
    }
    if (written < 0 && errno == EAGAIN && conn->state == CONNECTING) {
        /* the handshake is not done: send when the socket is writable */
        struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT, .data.ptr = conn};
        epoll_ctl(run->epoll, EPOLL_CTL_MOD, conn->fd, &event);
        return true;
    }
    return false;
}

/* Close `conn`; its place goes to the first request in line at the next refill(). */
static void retire(Run *run, Conn *conn) {
    drop(run, conn);
    run->live--;
}

/* A request whose connection failed before it was answered. */
static void broken(Run *run, Conn *conn, const char *kind) {
    if (conn->state == BUSY || conn->state == CONNECTING || conn->state == DONE)
        fail(run, conn->measured, kind);
    retire(run, conn);
}

static void push_waiting(Run *run, int64_t scheduled, bool measured) {
    if (run->waiting_count == run->waiting_cap) {
        size_t cap = run->waiting_cap ? 2 * run->waiting_cap : 1024;
        Waiting *grown = malloc(sizeof(Waiting) * cap);
        if (!grown) die("out of memory");
        for (size_t i = 0; i < run->waiting_count; i++)
            grown[i] = run->waiting[(run->waiting_head + i) % run->waiting_cap];
        free(run->waiting);
        run->waiting = grown;
        run->waiting_head = 0;
        run->waiting_cap = cap;
    }
    run->waiting[(run->waiting_head + run->waiting_count++) % run->waiting_cap] =
        (Waiting){scheduled, measured};
}

static Waiting pop_waiting(Run *run) {
    Waiting first = run->waiting[run->waiting_head];
    run->waiting_head = (run->waiting_head + 1) % run->waiting_cap;
    run->waiting_count--;
    return first;
}

/* Start request (scheduled, measured): on a free connection, a new one, or in line. */
static void start(Run *run, int64_t scheduled, bool measured) {
    run->in_flight++;
    while (run->idle_count) {
        Conn *conn = run->idle[run->idle_head];
        run->idle_head = (run->idle_head + 1) % run->settings.max_connections;
        run->idle_count--;
        if (send_request(run, conn, scheduled, measured)) return;
        drop(run, conn); /* the server closed it while idle: forget it, try the next */
        run->live--;
    }
    if (run->live < run->settings.max_connections) {
        run->live++;
        Conn *conn = open_conn(run);
        if (!conn) {
            run->live--;
            fail(run, measured, "connect");
        } else if (!send_request(run, conn, scheduled, measured)) {
            broken(run, conn, "connect"); /* refused, most likely */
        }
        return;
    }
    push_waiting(run, scheduled, measured);
}

/* A new request: behind those already in line, if any. */
static void dispatch(Run *run, int64_t scheduled, bool measured) {
    if (run->waiting_count) {
        run->in_flight++;
        push_waiting(run, scheduled, measured);
    } else {
        start(run, scheduled, measured);
    }
}

/* Keep-alive: `conn` is free again. The first request in line gets it; else it waits, idle. */
static void release(Run *run, Conn *conn) {
    conn->state = IDLE;
    if (run->waiting_count) {
        Waiting next = pop_waiting(run);
        run->in_flight--; /* start counts it again */
        run->idle_head = (run->idle_head + run->settings.max_connections - 1) %
                         run->settings.max_connections;
        run->idle[run->idle_head] = conn; /* first in line for `next` */
        run->idle_count++;
        start(run, next.scheduled, next.measured);
        return;
    }
    run->idle[(run->idle_head + run->idle_count++) % run->settings.max_connections] = conn;
}

/* Requests in line take the places closed connections left (see retire), one at a time:
 * a dispatch that fails at once frees its place again, and the loop goes on. */
static void refill(Run *run) {
    while (run->waiting_count && run->live < run->settings.max_connections) {
        Waiting next = pop_waiting(run);
        run->in_flight--; /* start counts it again */
        start(run, next.scheduled, next.measured);
    }
}

/* ---- responses ----------------------------------------------------------------------- */

/* Complete response at the start of conn->buffer: its length, else 0 (incomplete) or -1
 * (not HTTP). Sets *status and conn->closing. Framed by Content-Length; without it (or
 * chunked, which the benchmark servers do not send) the response ends with the connection. */
static ssize_t complete_length(Conn *conn, int *status, bool eof) {
    char *buffer = conn->buffer;
    size_t length = conn->length;
    char *end = memmem(buffer, length, "\r\n\r\n", 4);
    if (!end) return 0;
    if (length < 12 || memcmp(buffer, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(buffer + 9);
    size_t head = (size_t)(end - buffer) + 4;
    long body = -1;
    for (char *line = memchr(buffer, '\n', head); line && line < end; line = memchr(line + 1, '\n', (size_t)(end - line))) {
        char *field = line + 1;
        if (!strncasecmp(field, "content-length:", 15)) body = strtol(field + 15, NULL, 10);
        else if (!strncasecmp(field, "connection:", 11)) {
            char *value = field + 11;
            while (*value == ' ') value++;
            if (!strncasecmp(value, "close", 5)) conn->closing = true;
        }
    }
    if (body < 0) return eof ? (ssize_t)length : 0;
    return head + (size_t)body <= length ? (ssize_t)(head + (size_t)body) : 0;
}

/* Read what `conn` has; handle its complete response and the server's closing. */
static void readable(Run *run, Conn *conn) {
    bool eof = false;
    for (;;) {
        char control[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = {conn->buffer + conn->length, BUFFER_SIZE - conn->length};
        struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                                 .msg_controllen = sizeof control};
        if (iov.iov_len == 0) {
            broken(run, conn, "too large");
            return;
        }
        ssize_t got = recvmsg(conn->fd, &message, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            broken(run, conn, "socket");
            return;
        }
        if (got == 0) {
            eof = true;
            break;
        }
        conn->length += (size_t)got;
        conn->data_ts = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                conn->data_ts = ts.tv_sec * NS + ts.tv_nsec - run->realtime_offset;
            }
        }
        if (!conn->data_ts || run->settings.read_timing) conn->data_ts = now_ns(); /* when read */
        if (conn->state == BUSY && (size_t)got < iov.iov_len && run->settings.mode == KEEPALIVE)
            break; /* a keep-alive response is usually all there: spare the EAGAIN read */
    }
    if (conn->state == IDLE) { /* an idle keep-alive connection closed (or chattered) */
        if (eof || conn->length) {
            for (int i = 0; i < run->idle_count; i++) {
                int at = (run->idle_head + i) % run->settings.max_connections;
                if (run->idle[at] == conn) { /* out of the ring, keeping its order */
                    for (int j = i; j > 0; j--) {
                        int to = (run->idle_head + j) % run->settings.max_connections;
                        int from = (run->idle_head + j - 1) % run->settings.max_connections;
                        run->idle[to] = run->idle[from];
                    }
                    run->idle_head = (run->idle_head + 1) % run->settings.max_connections;
                    run->idle_count--;
                    break;
                }
            }
            retire(run, conn);
        }
        return;
    }
    if (conn->state == BUSY) {
        int status = 0;
        ssize_t length = complete_length(conn, &status, eof);
        if (length < 0) {
            broken(run, conn, "not http");
            return;
        }
        if (length == 0) {
            if (eof) broken(run, conn, "closed");
            return;
        }
        if (run->settings.mode == CLOSE) {
            conn->state = DONE;
            conn->status = status;
            conn->arrived = conn->data_ts;
        } else {
            finish(run, conn->scheduled, conn->measured, status, conn->data_ts);
            conn->length = 0;
            if (conn->closing || eof) retire(run, conn);
            else release(run, conn);
            return;
        }
    }
    if (conn->state == DONE && eof) { /* close mode: the server closed after the response */
        int64_t now = now_ns();
        if (conn->measured) record(&run->fin_after_data, now - conn->arrived);
        finish(run, conn->scheduled, conn->measured, conn->status, conn->arrived);
        retire(run, conn);
    }
}

static void writable(Run *run, Conn *conn) {
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error) {
        broken(run, conn, "connect");
        return;
    }
    struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = conn};
    epoll_ctl(run->epoll, EPOLL_CTL_MOD, conn->fd, &event);
    if (!send_request(run, conn, conn->scheduled, conn->measured)) broken(run, conn, "socket");
}

/* Handle every ready socket; wait at most `timeout_ns` for the first (0: do not wait). */
static void harvest(Run *run, int64_t timeout_ns) {
    struct epoll_event events[EVENTS];
    struct timespec timeout = {timeout_ns / NS, timeout_ns % NS};
    int ready;
    do {
        ready = (int)syscall(SYS_epoll_pwait2, run->epoll, events, EVENTS, &timeout, NULL, 0);
        if (ready < 0) {
            if (errno == EINTR) return;
            die("epoll_pwait2: %s (Linux 5.11 or later is needed)", strerror(errno));
        }
        for (int i = 0; i < ready; i++) {
            Conn *conn = events[i].data.ptr;
            if (conn->state == FREE) continue; /* closed while handling an earlier event */
            if (conn->state == CONNECTING) {
                if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) writable(run, conn);
                continue;
            }
            readable(run, conn);
        }
        timeout = (struct timespec){0, 0};
        run->reusable = run->spare_count; /* no later batch names a socket closed by now */
        refill(run);
    } while (ready == EVENTS);
}

static void expire(Run *run, int64_t now) {
    int64_t limit = (int64_t)(run->settings.timeout * NS);
    for (int i = run->open - 1; i >= 0; i--) {
        if (i >= run->open) continue; /* drop() moved the last one here: already seen */
        Conn *conn = run->conns[i];
        if (conn->state != IDLE && now - conn->scheduled > limit) broken(run, conn, "timeout");
    }
    while (run->waiting_count && now - run->waiting[run->waiting_head].scheduled > limit) {
        Waiting late = pop_waiting(run);
        fail(run, late.measured, "timeout");
    }
    refill(run);
}

/* ---- CPU accounting ------------------------------------------------------------------ */

static bool read_file(const char *path, char *buffer, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t got = read(fd, buffer, size - 1);
    close(fd);
    if (got < 0) return false;
    buffer[got] = '\0';
    return true;
}

/* Fields of /proc/PID/stat after "(comm)": fields[0] is the state (field 3). */
static int stat_fields(int pid, char **fields, int count, char *buffer, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (!read_file(path, buffer, size)) return 0;
    char *at = strrchr(buffer, ')');
    if (!at) return 0;
    int n = 0;
    for (char *save, *field = strtok_r(at + 1, " ", &save); field && n < count;
         field = strtok_r(NULL, " ", &save))
        fields[n++] = field;
    return n;
}

typedef struct {
    double cpu_s;      /* user + system */
    double run_delay_s; /* runnable, not running (schedstat), summed over threads */
} ProcessUse;

#define MAX_TREE 256
typedef struct {
    int pids[MAX_TREE];
    int count;
} Tree;

/* `pid` and its live descendants (granian serves from a child process), found once before
 * the run: reading them is then a few files, not a walk of /proc amid the sends. */
static Tree process_tree(int pid) {
    Tree tree = {{pid}, 1};
    static int parents[32768][2];
    static char buffer[4096];
    int pairs = 0;
    DIR *proc = opendir("/proc");
    if (!proc) return tree;
    for (struct dirent *entry; (entry = readdir(proc)) && pairs < 32768;) {
        if (!isdigit((unsigned char)entry->d_name[0])) continue;
        char *fields[4];
        int child = atoi(entry->d_name);
        if (stat_fields(child, fields, 4, buffer, sizeof buffer) >= 2)
            parents[pairs][0] = child, parents[pairs++][1] = atoi(fields[1]);
    }
    closedir(proc);
    for (int i = 0; i < tree.count; i++)
        for (int j = 0; j < pairs && tree.count < MAX_TREE; j++)
            if (parents[j][1] == tree.pids[i]) tree.pids[tree.count++] = parents[j][0];
    return tree;
}

static ProcessUse process_use(const Tree *tree) {
    ProcessUse use = {0, 0};
    static char buffer[4096];
    long ticks = sysconf(_SC_CLK_TCK);
    for (int i = 0; i < tree->count; i++) {
        char *fields[16];
        if (stat_fields(tree->pids[i], fields, 16, buffer, sizeof buffer) >= 13)
            use.cpu_s += (double)(atoll(fields[11]) + atoll(fields[12])) / (double)ticks;
        char path[300];
        snprintf(path, sizeof path, "/proc/%d/task", tree->pids[i]);
        DIR *tasks = opendir(path);
        if (!tasks) continue;
        for (struct dirent *task; (task = readdir(tasks));) {
            if (!isdigit((unsigned char)task->d_name[0])) continue;
            char schedstat[96];
            snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", tree->pids[i],
                     task->d_name);
            unsigned long long on_cpu, waited;
            if (read_file(path, schedstat, sizeof schedstat) &&
                sscanf(schedstat, "%llu %llu", &on_cpu, &waited) == 2)
                use.run_delay_s += (double)waited / NS;
        }
        closedir(tasks);
    }
    return use;
}

/* Steal time of all CPUs (/proc/stat, 8th number of the "cpu" line), seconds. */
static double steal_seconds(void) {
    static char buffer[8192];
    unsigned long long v[8];
    if (!read_file("/proc/stat", buffer, sizeof buffer) ||
        sscanf(buffer, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        return -1;
    return (double)v[7] / (double)sysconf(_SC_CLK_TCK);
}

/* The machine's CPU pressure, "some" total (/proc/pressure/cpu), seconds; -1 without PSI. */
static double pressure_seconds(void) {
    char buffer[256];
    if (!read_file("/proc/pressure/cpu", buffer, sizeof buffer)) return -1;
    char *total = strstr(buffer, "total=");
    return total ? (double)atoll(total + 6) / 1e6 : -1;
}

typedef struct {
    struct rusage self;
    double self_delay_s;
    ProcessUse server;
    double steal_s, pressure_s;
} Usage;

static double own_run_delay(void) {
    char buffer[96];
    unsigned long long on_cpu, waited;
    if (read_file("/proc/self/schedstat", buffer, sizeof buffer) &&
        sscanf(buffer, "%llu %llu", &on_cpu, &waited) == 2)
        return (double)waited / NS;
    return 0;
}

static Usage usage_now(const Tree *server) {
    Usage u;
    getrusage(RUSAGE_SELF, &u.self);
    u.self_delay_s = own_run_delay();
    u.server = server ? process_use(server) : (ProcessUse){0, 0};
    u.steal_s = steal_seconds();
    u.pressure_s = pressure_seconds();
    return u;
}

static double seconds_of(struct timeval tv) { return (double)tv.tv_sec + tv.tv_usec / 1e6; }

/* ---- the run ------------------------------------------------------------------------- */

/* When request i is due, in monotonic ns (batched: at the next multiple of the batch). */
static int64_t due(const Run *run, int64_t start, uint64_t i) {
    int64_t offset = (int64_t)((double)i * (double)NS / run->settings.rate);
    int64_t batch = run->settings.batch_ns;
    if (batch > 0) offset = (offset + batch - 1) / batch * batch;
    return start + offset;
}

static void setup(Run *run) {
    Settings *s = &run->settings;
    if (inet_pton(AF_INET, s->host, &run->address.sin_addr) != 1)
        die("--host: an IPv4 address, not %s", s->host);
    run->address.sin_family = AF_INET;
    run->address.sin_port = htons((uint16_t)s->port);
    run->request_length = (size_t)snprintf(
        run->request, sizeof run->request,
        "POST /send-notification/bench@example.com HTTP/1.1\r\nHost: %s:%d\r\n"
        "Content-Length: 0\r\n%s\r\n",
        s->host, s->port, s->mode == CLOSE ? "Connection: close\r\n" : "");
    run->epoll = epoll_create1(EPOLL_CLOEXEC);
    if (run->epoll < 0) die("epoll_create1: %s", strerror(errno));
    run->idle = calloc((size_t)s->max_connections, sizeof(Conn *));
    if (!run->idle) die("out of memory");
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max; /* close mode: a stalled server holds many sockets */
        setrlimit(RLIMIT_NOFILE, &files);
    }
    run->realtime_offset = clock_ns(CLOCK_REALTIME) - now_ns();
}

/* Open the pool's first connections, each connected before the run. */
static void fill(Run *run) {
    for (int i = 0; i < run->settings.connections; i++) {
        run->live++;
        Conn *conn = open_conn(run);
        struct pollfd wait = {.fd = conn ? conn->fd : -1, .events = POLLOUT};
        int error = errno;
        if (conn && poll(&wait, 1, 5000) == 1) {
            socklen_t size = sizeof error;
            getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &size);
        } else if (conn) {
            error = ETIMEDOUT;
        }
        if (!conn || error)
            die("cannot connect to %s:%d: %s", run->settings.host, run->settings.port,
                strerror(error));
        conn->state = IDLE;
        run->connecting--;
        run->idle[(run->idle_head + run->idle_count++) % run->settings.max_connections] = conn;
    }
}

static void print_ms(const char *name, int64_t ns, bool last) {
    if (ns < 0) printf("\"%s\": null%s", name, last ? "" : ", ");
    else printf("\"%s\": %.3f%s", name, (double)ns / MS, last ? "" : ", ");
}

int main(int argc, char **argv) {
    static Run run; /* zeroed: the histograms are large */
    run.settings = parse(argc, argv);
    Settings *s = &run.settings;
    setup(&run);
    if (s->mode == KEEPALIVE) fill(&run);

    uint64_t warmup = (uint64_t)llround(s->warmup * s->rate);
    uint64_t total = warmup + (uint64_t)llround(s->seconds * s->rate);
    int64_t start = now_ns() + 10 * MS;
    int64_t t0 = due(&run, start, warmup);
    Tree tree = s->watch_pid ? process_tree(s->watch_pid) : (Tree){{0}, 0};
    Tree *server = s->watch_pid ? &tree : NULL;
    Usage before = usage_now(server);
    int64_t next_scan = start + TIMEOUT_SCAN_NS;
    uint64_t i = 0;
    bool window = false;
    while (i < total || run.in_flight) {
        int64_t now = now_ns();
        if (i < total) {
            if (i == warmup && !window) { /* before the first recorded send's wake-up */
                before = usage_now(server);
                window = true;
            }
            int64_t next = due(&run, start, i);
            if (run.waiting_count || run.connecting || s->read_timing) {
                harvest(&run, next > now ? next - now : 0); /* wake for every event */
            } else {
                if (next > now) {
                    struct timespec until = {next / NS, next % NS};
                    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
                        ;
                }
                harvest(&run, 0); /* what arrived while asleep, timed by the kernel */
            }
            run.wakeups++;
            now = now_ns();
            run.realtime_offset = clock_ns(CLOCK_REALTIME) - now; /* follows NTP's slewing */
            while (i < total && (next = due(&run, start, i)) <= now) {
                bool measured = i >= warmup;
                if (measured) {
                    run.sent++;
                    record(&run.lag, now_ns() - next);
                }
                dispatch(&run, next, measured);
                i++;
            }
        } else {
            harvest(&run, TIMEOUT_SCAN_NS); /* all sent: wait for the rest */
            run.wakeups++;
            now = now_ns();
        }
        if (now >= next_scan) {
            expire(&run, now);
            next_scan = now + TIMEOUT_SCAN_NS;
        }
    }
    Usage after = usage_now(server);

    double wall = (double)(run.last_done > t0 ? run.last_done - t0 : 1) / NS;
    double user = seconds_of(after.self.ru_utime) - seconds_of(before.self.ru_utime);
    double sys = seconds_of(after.self.ru_stime) - seconds_of(before.self.ru_stime);
    double server_wait = 100 * (after.server.run_delay_s - before.server.run_delay_s) / wall;
    double client_wait = 100 * (after.self_delay_s - before.self_delay_s) / wall;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double steal = before.steal_s < 0 ? 0 : 100 * (after.steal_s - before.steal_s) / (wall * (double)cpus);
    uint64_t errors = 0;
    for (int k = 0; k < run.error_kinds; k++) errors += run.errors[k].count;

    printf("{\"kind\": \"open\", \"generator\": \"c\", \"mode\": \"%s\", \"rate\": %g, ",
           s->mode == CLOSE ? "close" : "keepalive", s->rate);
    printf("\"timing\": \"%s\", \"batch_us\": %g, \"sent\": %" PRIu64 ", \"ok\": %" PRIu64
           ", \"errors\": {",
           s->read_timing ? "read" : "kernel", (double)s->batch_ns / 1000, run.sent, run.ok);
    for (int k = 0; k < run.error_kinds; k++)
        printf("%s\"%s\": %" PRIu64, k ? ", " : "", run.errors[k].name, run.errors[k].count);
    printf("}, \"error_count\": %" PRIu64 ", \"latency_ms\": {", errors);
    print_ms("p50", percentile(&run.latency, 50), false);
    print_ms("p90", percentile(&run.latency, 90), false);
    print_ms("p99", percentile(&run.latency, 99), false);
    print_ms("p99.9", percentile(&run.latency, 99.9), false);
    print_ms("max", run.latency.total ? run.latency.max : -1, true);
    printf("}, \"throughput_rps\": %.1f, \"wall_s\": %.3f, \"window\": [%.4f, %.4f], ",
           (double)run.ok / wall, wall, (double)t0 / NS, (double)t0 / NS + wall);
    printf("\"client_cpu_s\": %.3f, \"client_user_s\": %.3f, \"client_sys_s\": %.3f, ",
           user + sys, user, sys);
    if (s->watch_pid)
        printf("\"server_cpu_s\": %.3f, \"server_wait_pct\": %.1f, ",
               after.server.cpu_s - before.server.cpu_s, server_wait);
    else
        printf("\"server_cpu_s\": null, \"server_wait_pct\": null, ");
    printf("\"client_wait_pct\": %.1f, \"steal_pct\": %.1f, ", client_wait, steal);
    if (before.pressure_s < 0) printf("\"cpu_pressure_pct\": null, ");
    else printf("\"cpu_pressure_pct\": %.1f, ", 100 * (after.pressure_s - before.pressure_s) / wall);
    printf("\"send_lag_ms\": {");
    print_ms("p50", percentile(&run.lag, 50), false);
    print_ms("p99", percentile(&run.lag, 99), false);
    print_ms("max", run.lag.total ? run.lag.max : -1, true);
    printf("}, \"fin_after_data_ms\": {");
    print_ms("p99", percentile(&run.fin_after_data, 99), false);
    print_ms("max", run.fin_after_data.total ? run.fin_after_data.max : -1, true);
    printf("}, \"connections_opened\": %" PRIu64 ", \"wakeups\": %" PRIu64 "}\n", run.opened,
           run.wakeups);
    return 0;
}
