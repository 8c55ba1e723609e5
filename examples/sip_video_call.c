/* A SIP audio + video call handler in C: answers incoming calls, routes them by what they
 * negotiated, and logs every received video frame.
 *
 *   video calls       a key frame is requested at once, so the log starts at an IDR
 *   audio-only calls  greeted with the DTMF digits "1#" so the caller hears something
 *   any call          pressing '#' hangs up (BYE from our side); '*' asks for a key frame
 *
 * Build (from the repository, after `cargo build --release --lib`):
 *   cc -std=c11 -Wall -Iinclude examples/sip_video_call.c target/release/libroomkit_media.a \
 *      -lpthread -ldl -lm -lssl -lcrypto -o sip_video_call
 * or, with the library installed: cc sip_video_call.c $(pkg-config --cflags --libs roomkit-media)
 *
 * Run: ./sip_video_call [SIP_ADDR [RTP_IP [MAX_CALLS]]]   (defaults 0.0.0.0:5060, 0.0.0.0, no limit)
 * Stops after MAX_CALLS calls have ended, or on Ctrl-C (live calls are hung up with BYE). */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "roomkit_media.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Everything the callbacks need, passed to them as user_data. The callbacks run on the
 * library's threads, so the counters are atomic and printing is one printf per line. */
typedef struct {
    rkm_backend *backend;
    atomic_int calls_ended;
    atomic_ulong frames;
} app;

static void on_call(void *user_data, const rkm_call_info *call) {
    app *a = user_data;
    printf("call %s from %s to %s (room %s): video=%s%s%s\n", call->session_id, call->caller,
           call->callee, call->room_id, call->has_video ? "yes" : "no",
           call->has_video ? " codec=" : "", call->has_video ? call->video_codec : "");
    if (call->has_video) {
        /* Route: video calls get a key frame request so decoding can start right away. */
        if (rkm_request_keyframe(a->backend, call->session_id) != RKM_OK) {
            printf("  keyframe request failed: %s\n", rkm_last_error());
        }
    } else {
        /* Route: audio-only calls are greeted with two DTMF digits. */
        rkm_send_dtmf(a->backend, call->session_id, '1', 120);
        rkm_send_dtmf(a->backend, call->session_id, '#', 120);
    }
    fflush(stdout);
}

static void on_video(void *user_data, const char *session_id, const rkm_video_frame *frame) {
    app *a = user_data;
    atomic_fetch_add(&a->frames, 1);
    printf("video %.8s codec=%s size=%zu keyframe=%d seq=%llu ts=%.1fms\n", session_id,
           frame->codec, frame->len, frame->keyframe, (unsigned long long)frame->sequence,
           frame->timestamp_ms);
    fflush(stdout);
}

static void on_dtmf(void *user_data, const char *session_id, char digit, uint32_t duration_ms) {
    app *a = user_data;
    printf("dtmf %.8s digit=%c duration=%ums\n", session_id, digit, (unsigned)duration_ms);
    if (digit == '#') {
        /* Hanging up from inside a callback is allowed: BYE goes out, the session closes. */
        rkm_disconnect(a->backend, session_id);
    } else if (digit == '*') {
        rkm_request_keyframe(a->backend, session_id);
    }
    fflush(stdout);
}

static void on_keyframe_requested(void *user_data, const char *session_id,
                                  rkm_keyframe_kind kind) {
    (void)user_data;
    printf("peer asks %.8s for a key frame (%s)\n", session_id,
           kind == RKM_KEYFRAME_PLI ? "PLI" : "FIR");
    fflush(stdout);
}

static void on_hangup(void *user_data, const rkm_session_info *session) {
    app *a = user_data;
    printf("hangup %s (%lu video frames received so far)\n", session->session_id,
           (unsigned long)atomic_load(&a->frames));
    atomic_fetch_add(&a->calls_ended, 1);
    fflush(stdout);
}

#define FAIL(what)                                                                            \
    do {                                                                                      \
        fprintf(stderr, "%s: %s\n", what, rkm_last_error());                                  \
        return 1;                                                                             \
    } while (0)

int main(int argc, char **argv) {
    const char *sip_addr = argc > 1 ? argv[1] : "0.0.0.0:5060";
    const char *rtp_ip = argc > 2 ? argv[2] : "0.0.0.0";
    int max_calls = argc > 3 ? atoi(argv[3]) : 0;

    rkm_sip_config cfg;
    rkm_sip_config_init(&cfg);
    cfg.local_sip_addr = sip_addr;
    cfg.local_rtp_ip = rtp_ip;
    cfg.rtp_port_start = 10000;
    cfg.rtp_port_end = 20000;
    cfg.supported_video_codecs = "H264,VP8";

    static app a;
    a.backend = rkm_sip_video_backend_new(&cfg);
    if (a.backend == NULL) {
        FAIL("creating the backend");
    }
    if (rkm_on_call(a.backend, on_call, &a) != RKM_OK ||
        rkm_on_video_received(a.backend, on_video, &a) != RKM_OK ||
        rkm_on_dtmf_received(a.backend, on_dtmf, &a) != RKM_OK ||
        rkm_on_keyframe_requested(a.backend, on_keyframe_requested, &a) != RKM_OK ||
        rkm_on_client_disconnected(a.backend, on_hangup, &a) != RKM_OK) {
        FAIL("registering callbacks");
    }
    if (rkm_backend_start(a.backend) != RKM_OK) {
        FAIL("starting");
    }
    char bound[RKM_ADDR_LEN];
    if (rkm_sip_local_addr(a.backend, bound, sizeof bound) != RKM_OK) {
        FAIL("reading the SIP address");
    }
    printf("roomkit-media %s listening on %s\n", rkm_version(), bound);
    fflush(stdout);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct timespec tick = {0, 100 * 1000000L};
    while (!stop_requested && (max_calls <= 0 || atomic_load(&a.calls_ended) < max_calls)) {
        nanosleep(&tick, NULL);
    }
    printf("stopping: %zu live call(s) hung up\n", rkm_session_count(a.backend));
    rkm_backend_free(a.backend);
    return 0;
}
