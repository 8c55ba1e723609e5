/* Helpers shared by the C tests: checks that report rkm_last_error(), a monotonic clock, bounded
 * waits, and synthetic H.264 pictures. Header-only; every test is one translation unit. */
#ifndef RKM_FFI_TESTS_COMMON_H
#define RKM_FFI_TESTS_COMMON_H

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roomkit_media.h"

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (rkm_last_error: %s)\n", __FILE__,       \
                    __LINE__, #cond, rkm_last_error());                                      \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                                       \
    do {                                                                                     \
        rkm_status st_ = (expr);                                                             \
        if (st_ != RKM_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr,         \
                    (int)st_, rkm_last_error());                                             \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* Milliseconds on the monotonic clock. */
static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits scale with RKM_TIMEOUT_SCALE (run.sh sets it under valgrind, which is ~20x slower). */
static inline long scaled_ms(long ms) {
    const char *s = getenv("RKM_TIMEOUT_SCALE");
    long k = s ? atol(s) : 1;
    return ms * (k > 0 ? k : 1);
}

/* Waits until *counter >= target or timeout_ms (scaled) passes; returns whether it got there. */
static inline int wait_for(atomic_int *counter, int target, long timeout_ms) {
    double deadline = now_ms() + (double)scaled_ms(timeout_ms);
    while (atomic_load(counter) < target) {
        if (now_ms() > deadline) {
            return 0;
        }
        sleep_ms(2);
    }
    return 1;
}

/* The steps of the calls a test dials, in order, as rkm_on_call_state reports them: state and
 * status of each (at most CALL_LOG_MAX; later ones are not kept). */
#define CALL_LOG_MAX 64
typedef struct {
    pthread_mutex_t lock;
    int states[CALL_LOG_MAX];
    int status[CALL_LOG_MAX];
    atomic_int n;
} call_log;

static inline void call_log_init(call_log *l) { pthread_mutex_init(&l->lock, NULL); }
static inline void call_log_destroy(call_log *l) { pthread_mutex_destroy(&l->lock); }

/* Steps recorded so far: a mark to wait from. */
static inline int call_log_len(call_log *l) { return atomic_load(&l->n); }

/* Records one step (from an rkm_on_call_state callback). */
static inline void call_log_add(call_log *l, const rkm_call_progress *p) {
    pthread_mutex_lock(&l->lock);
    int n = atomic_load(&l->n);
    if (n < CALL_LOG_MAX) {
        l->states[n] = (int)p->state;
        l->status[n] = p->status;
        atomic_store(&l->n, n + 1);
    }
    pthread_mutex_unlock(&l->lock);
}

/* An rkm_on_call_state callback that records into the call_log `ud`. */
static inline void record_call_state(void *ud, const rkm_call_progress *p) { call_log_add(ud, p); }

/* The index of the first step from `from` on in `state`, or -1 after `timeout_ms` (scaled). */
static inline int call_log_wait(call_log *l, int from, int state, long timeout_ms) {
    double deadline = now_ms() + (double)scaled_ms(timeout_ms);
    while (now_ms() < deadline) {
        pthread_mutex_lock(&l->lock);
        int n = atomic_load(&l->n);
        for (int i = from; i < n; i++) {
            if (l->states[i] == state) {
                pthread_mutex_unlock(&l->lock);
                return i;
            }
        }
        pthread_mutex_unlock(&l->lock);
        sleep_ms(2);
    }
    return -1;
}

/* A synthetic H.264 access unit, Annex-B with 4-byte start codes: SPS + PPS + IDR slice when
 * `key`, one non-IDR slice otherwise. Slice bytes are never 0, so no start code appears inside a
 * NAL unit. The caller frees the result. */
static inline uint8_t *h264_picture(int key, size_t slice_len, uint32_t seed, size_t *len_out) {
    static const uint8_t sps_pps_idr[] = {0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8c, 0x8d,
                                          0x40, 0x50, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
                                          0, 0, 0, 1, 0x65};
    static const uint8_t non_idr[] = {0, 0, 0, 1, 0x41};
    const uint8_t *head = key ? sps_pps_idr : non_idr;
    size_t head_len = key ? sizeof sps_pps_idr : sizeof non_idr;
    uint8_t *p = malloc(head_len + slice_len);
    if (p == NULL) {
        abort();
    }
    memcpy(p, head, head_len);
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < slice_len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint8_t b = (uint8_t)x;
        p[head_len + i] = b ? b : 1;
    }
    *len_out = head_len + slice_len;
    return p;
}

/* An RTP config on loopback with OS-chosen ports. */
static inline rkm_rtp_config loopback_config(void) {
    rkm_rtp_config cfg;
    rkm_rtp_config_init(&cfg);
    cfg.local_addr = "127.0.0.1:0";
    cfg.video_local_addr = "127.0.0.1:0";
    return cfg;
}

/* A SIP config on loopback: SIP on an OS-chosen port, RTP on the 40 ports from `rtp_start`. */
static inline rkm_sip_config loopback_sip_config(uint16_t rtp_start) {
    rkm_sip_config cfg;
    rkm_sip_config_init(&cfg);
    cfg.local_sip_addr = "127.0.0.1:0";
    cfg.local_rtp_ip = "127.0.0.1";
    cfg.rtp_port_start = rtp_start;
    cfg.rtp_port_end = (uint16_t)(rtp_start + 39);
    return cfg;
}

/* A SIP voice backend on `loopback_sip_config`, overload control off: under valgrind the SIP
 * thread lags, and overload control would refuse the INVITEs (503). */
static inline rkm_backend *loopback_sip_voice_backend(uint16_t rtp_start) {
    rkm_sip_config cfg = loopback_sip_config(rtp_start);
    cfg.overload_max_backlog_ms = 0;
    rkm_backend *b = rkm_sip_voice_backend_new(&cfg);
    CHECK(b != NULL);
    return b;
}

/* Connects one session on each of `a` and `b`, aimed at each other: a's session first towards a
 * placeholder, b's towards a's bound ports, then a's re-aimed at b's. */
static inline void connect_pair(rkm_backend *a, rkm_backend *b, char a_id[RKM_SESSION_ID_LEN],
                                char b_id[RKM_SESSION_ID_LEN]) {
    CHECK_OK(rkm_connect(a, "room-a", "alice", "127.0.0.1:9", "127.0.0.1:9", a_id,
                         RKM_SESSION_ID_LEN));
    rkm_session_addrs aa;
    CHECK_OK(rkm_session_addresses(a, a_id, &aa));
    CHECK(aa.has_video);
    CHECK_OK(rkm_connect(b, "room-b", "bob", aa.local_addr, aa.video_local_addr, b_id,
                         RKM_SESSION_ID_LEN));
    rkm_session_addrs ba;
    CHECK_OK(rkm_session_addresses(b, b_id, &ba));
    CHECK_OK(rkm_update_remote(a, a_id, ba.local_addr, ba.video_local_addr));
}

/* Whether some process has bound UDP `port` (Linux: read from /proc/net/udp). A probe that
 * binds the port itself could make a peer's own bind (sipp's) fail when the two race. */
static inline int udp_port_taken(int port) {
    const char *tables[] = {"/proc/net/udp", "/proc/net/udp6"};
    char needle[16];
    snprintf(needle, sizeof needle, ":%04X", port);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        FILE *f = fopen(tables[i], "r");
        if (f == NULL) {
            continue;
        }
        char line[512];
        int taken = 0;
        while (!taken && fgets(line, sizeof line, f) != NULL) {
            char local[128];
            /* "sl local_address rem_address ...": the local address is the second field. */
            if (sscanf(line, "%*s %127s", local) == 1) {
                size_t n = strlen(local), k = strlen(needle);
                taken = n >= k && strcmp(local + n - k, needle) == 0;
            }
        }
        fclose(f);
        if (taken) {
            return 1;
        }
    }
    return 0;
}

/* A port in 20000-29999 (outside the RTP ranges the tests use) that nothing holds now, starting
 * from `seed`. */
static inline int free_peer_port(unsigned seed) {
    int port = 20000 + (int)(seed % 10000);
    for (int tries = 0; udp_port_taken(port) && tries < 100; tries++) {
        port = 20000 + (port - 20000 + 7) % 10000;
    }
    return port;
}

#endif
