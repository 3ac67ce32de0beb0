/* The kernel floor of the LLM-streams bench (docs/benchmarks.md): what one write per token
 * event and one read per token event cost on this machine, with nothing else around them.
 *
 * `floor serve` plays the simulator's part. It accepts connections on 127.0.0.1 and answers
 * each request the way `faultline simulate` does, the same sizes in the same writes: the
 * response head at once; after the time to first token the role event with the first token;
 * one token event per token interval; the last token with the finish, usage and [DONE] events
 * and the chunked terminator. One write(2) each, timed on one 1 ms wheel for all streams.
 *
 * `floor load` plays the load generator's part: requests at a fixed rate (open loop),
 * kept-alive connections reused, one read(2) per readiness on one epoll set.
 *
 * Neither parses anything, allocates per event or has a second thread: what they spend per
 * event is what a program making the same syscalls pays on this kernel for the same streams,
 * the floor the bench sets faultline's simulator and load generator beside.
 * `floor forward` is a reference for the TCP proxy: a thread per direction copying through a
 * 1 MiB buffer with blocking reads and writes, a plain user-space forwarder (splice(2)
 * measured worse here: docs/benchmarks.md). Built by benches/llm-streams.sh with the system's
 * cc; used only by the bench.
 *
 *     floor serve TTFT_MS TOKENS_PER_SECOND TOKENS
 *     floor load PORT RATE SECONDS TOKENS
 *     floor forward UPSTREAM_PORT
 *
 * The server prints "floor serving on 127.0.0.1:PORT" and the forwarder "floor forwarding on
 * 127.0.0.1:PORT" once they listen; both run until SIGTERM, when the server prints how many
 * writes it could not finish (0 while the readers keep up). The load prints one JSON line:
 * requests, ok, events (54 per whole 50-token stream, what faultline's load generator counts
 * for the simulator's; meaningful only when every stream is whole), bytes and the bytes
 * expected. Everything is loopback only. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What `faultline simulate` writes for a 50-token OpenAI chat stream with usage, in the same
 * sizes (its ids, timestamps and token texts are as long as these; the usage event is sized
 * for 50 tokens whatever TOKENS is): a role event, the token
 * events ("t12/50 " is a typical token), and the closing finish, usage and [DONE] events. */
static const char OPENING[] =
    "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":null,"
    "\"index\":0,\"logprobs\":null}],\"created\":1796177959,\"id\":\"chatcmpl-sim000000000001\","
    "\"model\":\"sim\",\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n";
static const char TOKEN[] =
    "data: {\"choices\":[{\"delta\":{\"content\":\"t12/50 \"},\"finish_reason\":null,\"index\":0,"
    "\"logprobs\":null}],\"created\":1796177959,\"id\":\"chatcmpl-sim000000000001\","
    "\"model\":\"sim\",\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n";
static const char CLOSING[] =
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\",\"index\":0,\"logprobs\":null}],"
    "\"created\":1796177959,\"id\":\"chatcmpl-sim000000000001\",\"model\":\"sim\","
    "\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n"
    "data: {\"choices\":[],\"created\":1796177959,\"id\":\"chatcmpl-sim000000000001\","
    "\"model\":\"sim\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":50,"
    "\"prompt_tokens\":1,\"total_tokens\":51}}\n\n"
    "data: [DONE]\n\n";
/* Events per stream beside the tokens: the role, finish and usage events and [DONE]. */
#define EXTRA_EVENTS 4
static const char HEAD[] =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    "x-served-by: sim\r\ntransfer-encoding: chunked\r\ndate: Wed, 02 Dec 2026 02:19:19 GMT\r\n\r\n";
#define BODY \
    "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"floor\"}],\"stream\":true," \
    "\"max_tokens\":256,\"stream_options\":{\"include_usage\":true}}"
static char request[512];
static size_t request_len;

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

/* The framed writes, "hex\r\n" + payload + "\r\n", built once: the server never formats. */
static char first[1024], frame[512], last[1024];
static size_t first_len, frame_len, last_len;

static size_t chunk(char *out, const char *payload, size_t n) {
    int h = snprintf(out, 16, "%zx\r\n", n);
    memcpy(out + h, payload, n);
    memcpy(out + h + n, "\r\n", 2);
    return (size_t)h + n + 2;
}

/* A listener on 127.0.0.1 at a port the kernel picks, announced on stdout for the bench. */
static int listen_loopback(int flags, const char *doing) {
    int ls = socket(AF_INET, SOCK_STREAM | flags, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 4096) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("floor %s on 127.0.0.1:%d\n", doing, ntohs(a.sin_port));
    fflush(stdout);
    return ls;
}

/* ---- serve ---------------------------------------------------------------------------- */

struct stream {
    int next;      /* next fd in the same wheel slot, or NONE */
    int left;      /* token events still to write */
    int streaming; /* 1 while a response plays (the fd is then in the wheel) */
    int dead;      /* the peer closed while it played: closed when the wheel lets it go */
    long long due; /* when the next write is due (ms) */
    size_t seen;   /* request bytes seen so far (for the end of its body) */
};

static struct stream conns[MAX_FDS];
static int wheel[WHEEL];
/* The last tick the wheel has played: nothing may be scheduled at or before it. */
static long long tick;
static long long cut_short;
static volatile sig_atomic_t stopping;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static void schedule(int fd, long long due) {
    if (due <= tick) due = tick + 1;
    conns[fd].due = due;
    int slot = (int)(due % WHEEL);
    conns[fd].next = wheel[slot];
    wheel[slot] = fd;
}

/* Writes all of it or counts it as cut short: a reader that lets the socket buffer fill has
 * fallen behind, and the floor does not queue for it (the bench checks the count is 0). */
static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            cut_short++;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void play(int fd, int interval_ms, int tokens) {
    struct stream *s = &conns[fd];
    if (s->dead) {
        s->streaming = 0;
        s->dead = 0;
        close(fd);
        return;
    }
    if (s->left == tokens) {
        write_all(fd, first, first_len);
    } else if (s->left == 1) {
        write_all(fd, last, last_len);
    } else {
        write_all(fd, frame, frame_len);
    }
    s->left--;
    if (s->left == 0) {
        s->streaming = 0;
    } else {
        schedule(fd, s->due + interval_ms);
    }
}

static int serve(int ttft_ms, double tps, int tokens) {
    int interval_ms = (int)(1000.0 / tps + 0.5);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < WHEEL; i++) wheel[i] = NONE;
    int ls = listen_loopback(SOCK_NONBLOCK, "serving");
    int one = 1;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    char buf[4096];
    tick = now_ms();
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
                    memset(&conns[c], 0, sizeof conns[c]);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                /* Still linked in the wheel: closing now would let accept reuse the fd under
                 * it, so the wheel closes it when it comes round. */
                if (conns[fd].streaming) conns[fd].dead = 1;
                else close(fd);
                continue;
            }
            /* Every request of the bench is the same: a stream starts with its last byte. */
            conns[fd].seen += (size_t)r;
            if (conns[fd].seen >= request_len && !conns[fd].streaming) {
                conns[fd].seen = 0;
                conns[fd].streaming = 1;
                conns[fd].left = tokens;
                /* The head goes at once, as the simulator sends its headers. */
                write_all(fd, HEAD, sizeof HEAD - 1);
                schedule(fd, now_ms() + ttft_ms);
            }
        }
        long long now = now_ms();
        while (tick < now) {
            tick++;
            int slot = (int)(tick % WHEEL);
            int fd = wheel[slot];
            wheel[slot] = NONE;
            while (fd != NONE) {
                int next = conns[fd].next;
                if (conns[fd].due <= tick) play(fd, interval_ms, tokens);
                else schedule(fd, conns[fd].due); /* a lap of the wheel later */
                fd = next;
            }
        }
    }
    printf("floor serve: %lld writes cut short\n", cut_short);
    return 0;
}

/* ---- load ----------------------------------------------------------------------------- */

struct client {
    size_t got; /* response bytes read of the current stream */
    int busy;
};

static struct client clients[MAX_FDS];

static int load(int port, double rate, double secs, int tokens) {
    signal(SIGPIPE, SIG_IGN);
    size_t expect = (sizeof HEAD - 1) + first_len + (size_t)(tokens - 2) * frame_len + last_len;
    int ep = epoll_create1(0);
    int *idle = malloc(sizeof(int) * MAX_FDS);
    if (!idle) die("malloc");
    int nidle = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long long requests = (long long)(rate * secs), sent = 0, ok = 0, bytes = 0, open = 0;
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
            write_all(fd, request, request_len);
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
    printf("{\"requests\": %lld, \"ok\": %lld, \"events\": %lld, \"bytes\": %lld, "
           "\"expected_bytes\": %lld}\n",
           sent, ok, ok * (tokens + EXTRA_EVENTS), bytes, ok * (long long)expect);
    return ok == requests ? 0 : 1;
}

/* ---- forward -------------------------------------------------------------------------- */

/* One proxied connection: its two sockets, closed by whichever direction ends last. */
struct link {
    int client, upstream;
    atomic_int directions;
};

struct half {
    struct link *link;
    int from, to;
};

static void *copy(void *arg) {
    struct half h = *(struct half *)arg;
    free(arg);
    char *buf = malloc(1 << 20);
    if (buf) {
        ssize_t r;
        while ((r = read(h.from, buf, 1 << 20)) > 0) {
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = write(h.to, buf + off, (size_t)(r - off));
                if (w <= 0) goto done;
                off += w;
            }
        }
    }
done:
    free(buf);
    /* Half-close like a proxy does: the other direction may still be talking. */
    shutdown(h.to, SHUT_WR);
    shutdown(h.from, SHUT_RD);
    if (atomic_fetch_sub(&h.link->directions, 1) == 1) {
        close(h.link->client);
        close(h.link->upstream);
        free(h.link);
    }
    return NULL;
}

static int start_copy(struct link *link, int from, int to) {
    struct half *h = malloc(sizeof *h);
    if (!h) return -1;
    h->link = link;
    h->from = from;
    h->to = to;
    pthread_t t;
    if (pthread_create(&t, NULL, copy, h) != 0) {
        free(h);
        return -1;
    }
    pthread_detach(t);
    return 0;
}

static int forward(int upstream_port) {
    signal(SIGPIPE, SIG_IGN);
    int ls = listen_loopback(0, "forwarding");
    struct sockaddr_in up = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)upstream_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    /* Until killed: the bench's forwarder lives for a few iperf3 runs. */
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
        struct link *link = malloc(sizeof *link);
        if (!link) die("malloc");
        link->client = c;
        link->upstream = u;
        atomic_init(&link->directions, 2);
        if (start_copy(link, c, u) < 0 || start_copy(link, u, c) < 0) die("pthread_create");
    }
    return 0;
}

int main(int argc, char **argv) {
    /* The first write: the role event and the first token; the last: the last token, the
     * closing events and the chunked terminator; every other write one token event. */
    first_len = chunk(first, OPENING, sizeof OPENING - 1);
    first_len += chunk(first + first_len, TOKEN, sizeof TOKEN - 1);
    frame_len = chunk(frame, TOKEN, sizeof TOKEN - 1);
    last_len = chunk(last, TOKEN, sizeof TOKEN - 1);
    last_len += chunk(last + last_len, CLOSING, sizeof CLOSING - 1);
    memcpy(last + last_len, "0\r\n\r\n", 5);
    last_len += 5;
    request_len = (size_t)snprintf(request, sizeof request,
                                   "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                                   "content-type: application/json\r\ncontent-length: %zu\r\n\r\n%s",
                                   sizeof BODY - 1, BODY);
    /* The bench is the only caller; a bad argument still gets a word, not a wild run. */
    if (argc == 5 && strcmp(argv[1], "serve") == 0) {
        int ttft = atoi(argv[2]), tokens = atoi(argv[4]);
        double tps = atof(argv[3]);
        if (ttft >= 0 && ttft < WHEEL / 2 && tps >= 1000.0 / (WHEEL / 2) && tps <= 1000 &&
            tokens >= 2)
            return serve(ttft, tps, tokens);
    }
    if (argc == 6 && strcmp(argv[1], "load") == 0) {
        int port = atoi(argv[2]), tokens = atoi(argv[5]);
        double rate = atof(argv[3]), secs = atof(argv[4]);
        if (port > 0 && port < 65536 && rate > 0 && secs > 0 && secs < 3600 && tokens >= 2)
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
