/* The kernel floor of the LLM-streams bench (docs/benchmarks.md): what one write per token
 * event and one read per token event cost on this machine, with nothing else around them.
 *
 * `floor serve` plays the simulator's part: it accepts connections on 127.0.0.1, answers each
 * request with a chunked SSE stream whose first event goes out after the time to first token
 * and each next one a token interval later, one write(2) per event, timed on one shared 1 ms
 * wheel. `floor load` plays the load generator's part: requests at a fixed rate (open loop),
 * kept-alive connections reused, and one read(2) per readiness on one epoll set. Neither parses
 * anything, allocates per event or has a second thread: whatever CPU they spend per event is
 * what any program pays on this kernel for the same streams, so it is the floor the bench
 * compares faultline's simulator and load generator with. `floor forward` is the same for the
 * TCP proxy: a thread per direction copying through a 1 MiB buffer with blocking reads and
 * writes, the cheapest user-space forwarder (splice(2) measured worse here: docs/benchmarks.md).
 * Built by benches/llm-streams.sh with the system's cc; used only by the bench.
 *
 *     floor serve TTFT_MS TOKENS_PER_SECOND TOKENS
 *     floor load PORT RATE SECONDS TOKENS
 *     floor forward UPSTREAM_PORT
 *
 * The server prints "floor serving on 127.0.0.1:PORT" and the forwarder "floor forwarding on
 * 127.0.0.1:PORT" once they listen; both run until SIGTERM. The load prints one JSON line:
 * requests, ok, events, bytes. Everything is loopback only. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* An OpenAI chat chunk of about the size the simulator writes per token (its template with a
 * short token), so the kernel copies as many bytes per event as it does there. */
static const char EVENT[] =
    "data: {\"id\":\"chatcmpl-floor000000000000\",\"object\":\"chat.completion.chunk\","
    "\"created\":1764633600,\"model\":\"sim\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\" tok\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
static const char DONE[] = "data: [DONE]\n\n";
static const char HEAD[] =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    "transfer-encoding: chunked\r\n\r\n";
static const char REQUEST[] =
    "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    "content-length: 92\r\n\r\n"
    "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"floor\"}],\"stream\":true,"
    "\"max_tokens\":256}";

#define MAX_FDS 65536
#define WHEEL 65536 /* slots of 1 ms: every wait the bench asks for is shorter */
#define NONE (-1)

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* The framed event, "hex\r\n" + payload + "\r\n", built once: the server never formats. */
static char frame[512], last[512];
static size_t frame_len, last_len;

static size_t chunk(char *out, const char *payload, size_t n) {
    int h = snprintf(out, 16, "%zx\r\n", n);
    memcpy(out + h, payload, n);
    memcpy(out + h + n, "\r\n", 2);
    return (size_t)h + n + 2;
}

/* ---- serve ---------------------------------------------------------------------------- */

struct stream {
    int next;       /* next fd in the same wheel slot, or NONE */
    int left;       /* token events still to write */
    int streaming;  /* 1 while a response plays */
    long long due;  /* when the next event is due (ms) */
    int head_sent;
    size_t seen;    /* request bytes seen so far (for the end of its body) */
};

static struct stream conns[MAX_FDS];
static int wheel[WHEEL];
static volatile sig_atomic_t stopping;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static void schedule(int fd, long long due) {
    conns[fd].due = due;
    int slot = (int)(due % WHEEL);
    conns[fd].next = wheel[slot];
    wheel[slot] = fd;
}

static void write_all(int fd, const char *p, size_t n) {
    /* A socket buffer full of unread events means the reader fell behind; the floor does not
     * queue for it, it counts nothing and moves on (the bench's readers keep up). */
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void play(int fd, int interval_ms) {
    struct stream *s = &conns[fd];
    if (!s->streaming) return; /* the connection closed and the fd was reused */
    char buf[1024];
    size_t n = 0;
    if (!s->head_sent) {
        memcpy(buf, HEAD, sizeof HEAD - 1);
        n = sizeof HEAD - 1;
        s->head_sent = 1;
    }
    s->left--;
    if (s->left == 0) {
        memcpy(buf + n, last, last_len);
        n += last_len;
        s->streaming = 0;
        s->head_sent = 0;
    } else {
        memcpy(buf + n, frame, frame_len);
        n += frame_len;
    }
    write_all(fd, buf, n);
    if (s->streaming) schedule(fd, s->due + interval_ms);
}

static int serve(int ttft_ms, double tps, int tokens) {
    int interval_ms = tps > 0 ? (int)(1000.0 / tps + 0.5) : 0;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < WHEEL; i++) wheel[i] = NONE;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 4096) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("floor serving on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    char buf[4096];
    long long tick = now_ms();
    while (!stopping) {
        int n = epoll_wait(ep, evs, 1024, 1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break;
                    if (c >= MAX_FDS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    /* `next` may still link an earlier stream of this fd in the wheel. */
                    conns[c].streaming = 0;
                    conns[c].head_sent = 0;
                    conns[c].seen = 0;
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                conns[fd].streaming = 0;
                close(fd);
                continue;
            }
            /* Every request of the bench is REQUEST: a stream starts when its last byte is in. */
            conns[fd].seen += (size_t)r;
            if (conns[fd].seen >= sizeof REQUEST - 1 && !conns[fd].streaming) {
                conns[fd].seen = 0;
                conns[fd].streaming = 1;
                conns[fd].left = tokens;
                schedule(fd, now_ms() + ttft_ms);
            }
        }
        long long now = now_ms();
        for (; tick <= now; tick++) {
            int slot = (int)(tick % WHEEL);
            int fd = wheel[slot];
            wheel[slot] = NONE;
            while (fd != NONE) {
                int next = conns[fd].next;
                if (conns[fd].due <= tick) play(fd, interval_ms);
                else schedule(fd, conns[fd].due); /* a lap of the wheel later */
                fd = next;
            }
        }
    }
    return 0;
}

/* ---- load ----------------------------------------------------------------------------- */

struct client {
    size_t got;  /* response bytes read of the current stream */
    int busy;
};

static struct client clients[MAX_FDS];

static int load(int port, double rate, double secs, int tokens) {
    signal(SIGPIPE, SIG_IGN);
    size_t expect = (sizeof HEAD - 1) + (size_t)(tokens - 1) * frame_len + last_len;
    int ep = epoll_create1(0);
    int *idle = malloc(sizeof(int) * MAX_FDS);
    if (!idle) die("malloc");
    int nidle = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long long requests = (long long)(rate * secs), sent = 0, ok = 0, bytes = 0, open = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Bounded: the last request is sent at SECONDS, and the run gives up at SECONDS + 60. */
    long long start = now_ms(), give_up = start + (long long)(secs * 1000) + 60000;
    struct epoll_event evs[1024];
    char buf[4096];
    int one = 1;
    while ((sent < requests || open > 0) && now_ms() < give_up) {
        long long due = (long long)((now_ms() - start) * rate / 1000.0);
        for (; sent < requests && sent <= due; sent++) {
            int fd;
            if (nidle > 0) {
                fd = idle[--nidle];
            } else {
                fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0) die("socket");
                if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
                if (fd >= MAX_FDS) die("too many connections");
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
            }
            clients[fd].got = 0;
            clients[fd].busy = 1;
            open++;
            write_all(fd, REQUEST, sizeof REQUEST - 1);
        }
        int n = epoll_wait(ep, evs, 1024, 1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                fprintf(stderr, "floor load: the server closed a connection\n");
                return 2;
            }
            bytes += r;
            clients[fd].got += (size_t)r;
            if (clients[fd].busy && clients[fd].got >= expect) {
                clients[fd].busy = 0;
                open--;
                ok++;
                idle[nidle++] = fd;
            }
        }
    }
    /* Events as a load generator counts them: every token event and the [DONE]. */
    printf("{\"requests\": %lld, \"ok\": %lld, \"events\": %lld, \"bytes\": %lld}\n", sent, ok,
           ok * (tokens + 1), bytes);
    return ok == requests ? 0 : 1;
}

/* ---- forward -------------------------------------------------------------------------- */

struct pipe_ends {
    int from, to;
};

static void *copy(void *arg) {
    struct pipe_ends e = *(struct pipe_ends *)arg;
    free(arg);
    char *buf = malloc(1 << 20);
    if (buf) {
        ssize_t r;
        while ((r = read(e.from, buf, 1 << 20)) > 0) {
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = write(e.to, buf + off, (size_t)(r - off));
                if (w <= 0) goto done;
                off += w;
            }
        }
    }
done:
    free(buf);
    /* Half-close like a proxy does: the other direction may still be talking. */
    shutdown(e.to, SHUT_WR);
    shutdown(e.from, SHUT_RD);
    return NULL;
}

static int start_copy(int from, int to) {
    struct pipe_ends *e = malloc(sizeof *e);
    if (!e) return -1;
    e->from = from;
    e->to = to;
    pthread_t t;
    if (pthread_create(&t, NULL, copy, e) != 0) {
        free(e);
        return -1;
    }
    pthread_detach(t);
    return 0;
}

static int forward(int upstream_port) {
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 128) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("floor forwarding on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((unsigned short)upstream_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    /* Connections (and their threads) are never reaped: the bench's forwarder lives for a few
     * iperf3 runs and is then killed. */
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            die("accept");
        }
        int u = socket(AF_INET, SOCK_STREAM, 0);
        if (u < 0 || connect(u, (struct sockaddr *)&up, sizeof up) < 0) {
            close(c);
            if (u >= 0) close(u);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (start_copy(c, u) < 0 || start_copy(u, c) < 0) die("pthread_create");
    }
    return 0;
}

int main(int argc, char **argv) {
    frame_len = chunk(frame, EVENT, sizeof EVENT - 1);
    /* The last write carries the last token, the [DONE] and the chunked terminator. */
    last_len = chunk(last, EVENT, sizeof EVENT - 1);
    last_len += chunk(last + last_len, DONE, sizeof DONE - 1);
    memcpy(last + last_len, "0\r\n\r\n", 5);
    last_len += 5;
    /* The bench is the only caller; a bad argument still gets a word, not a wild run. */
    if (argc == 5 && strcmp(argv[1], "serve") == 0) {
        int ttft = atoi(argv[2]), tokens = atoi(argv[4]);
        double tps = atof(argv[3]);
        if (ttft >= 0 && ttft < WHEEL / 2 && tps >= 1000.0 / (WHEEL / 2) && tokens >= 1)
            return serve(ttft, tps, tokens);
    }
    if (argc == 6 && strcmp(argv[1], "load") == 0) {
        int port = atoi(argv[2]), tokens = atoi(argv[5]);
        double rate = atof(argv[3]), secs = atof(argv[4]);
        if (port > 0 && port < 65536 && rate > 0 && secs > 0 && secs < 3600 && tokens >= 1)
            return load(port, rate, secs, tokens);
    }
    if (argc == 3 && strcmp(argv[1], "forward") == 0) {
        int port = atoi(argv[2]);
        if (port > 0 && port < 65536) return forward(port);
    }
    fprintf(stderr, "usage: floor serve TTFT_MS TOKENS_PER_SECOND TOKENS\n"
                    "       floor load PORT RATE SECONDS TOKENS\n"
                    "       floor forward UPSTREAM_PORT\n");
    return 2;
}
