/* Incoming SIP calls from sipp to a SIP video backend hosted by this C program. An audio-only
 * offer gives has_video false and no video stream. An audio + video call:
 * on_call reports the caller, the room (X-Room-ID), has_video and the H.264 codec; video can be
 * sent on the call from inside the callback; the caller's BYE ends the session. A second call is
 * ended by this side with rkm_disconnect, which sends BYE (sipp waits for it and answers); a
 * third is still up when the backend is freed, which hangs it up with BYE too.
 *
 * Usage: sip_call [SCENARIO_DIR [LOG_DIR]], from the repository root (defaults: ffi-tests/sipp,
 * target/ffi-tests). */
#include "common.h"

#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    rkm_backend *b;
    pthread_mutex_t lock;
    atomic_int calls;
    atomic_int video_ready;
    atomic_int disconnected;
    atomic_int errors;
    char session[RKM_SESSION_ID_LEN];
    int has_video;
    char video_codec[16];
    char caller[128];
    char room[64];
    char x_headers[256];
} host;

static host h;

static void on_call(void *ud, const rkm_call_info *c) {
    host *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->session, sizeof s->session, "%s", c->session_id);
    s->has_video = c->has_video;
    snprintf(s->video_codec, sizeof s->video_codec, "%s", c->video_codec ? c->video_codec : "");
    snprintf(s->caller, sizeof s->caller, "%s", c->caller);
    snprintf(s->room, sizeof s->room, "%s", c->room_id);
    snprintf(s->x_headers, sizeof s->x_headers, "%s", c->x_headers);
    pthread_mutex_unlock(&s->lock);
    /* Send a key picture to the caller right away, from the callback thread; on an audio-only
     * call there is no video stream to send it on. */
    size_t len;
    uint8_t *p = h264_picture(1, 4000, 7, &len);
    rkm_status want = c->has_video ? RKM_OK : RKM_ERR_STATE;
    if (rkm_send_video(s->b, c->session_id, p, len) != want) {
        fprintf(stderr, "send_video in on_call: %s\n", rkm_last_error());
        atomic_fetch_add(&s->errors, 1);
    }
    free(p);
    if (c->has_video != (c->video_codec != NULL)) {
        atomic_fetch_add(&s->errors, 1);
    }
    atomic_fetch_add(&s->calls, 1);
}

static void on_video_ready(void *ud, const rkm_session_info *info) {
    host *s = ud;
    if (!info->has_video) {
        atomic_fetch_add(&s->errors, 1);
    }
    atomic_fetch_add(&s->video_ready, 1);
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    host *s = ud;
    (void)info;
    atomic_fetch_add(&s->disconnected, 1);
}

typedef struct {
    char command[1024];
    int exit_code;
} sipp_run;

static void *run_sipp(void *arg) {
    sipp_run *r = arg;
    int rc = system(r->command);
    r->exit_code = rc == -1 ? -1 : (WIFEXITED(rc) ? WEXITSTATUS(rc) : 128);
    return NULL;
}

static void start_sipp(pthread_t *t, sipp_run *r, const char *dir, const char *log_dir,
                       const char *scenario, const char *target) {
    /* sipp's own SIP port is explicit: without -p (or with -p 0) it takes 5060, which another
     * test running at the same time may hold. Ports 20000-29999, apart from the RTP range. */
    static int round = 0;
    int port = free_peer_port((unsigned)getpid() * 7u + (unsigned)round++);
    snprintf(r->command, sizeof r->command,
             "sipp -sf %s/%s.xml -m 1 -i 127.0.0.1 -p %d -nostdin -timeout %lds -timeout_error "
             "%s > %s/%s.sipp.log 2>&1",
             dir, scenario, port, scaled_ms(20000) / 1000, target, log_dir, scenario);
    CHECK(pthread_create(t, NULL, run_sipp, r) == 0);
}

static void check_call(void) {
    pthread_mutex_lock(&h.lock);
    CHECK(h.has_video);
    CHECK(strcmp(h.video_codec, "h264") == 0);
    CHECK(strstr(h.caller, "ctest") != NULL);
    CHECK(strcmp(h.room, "ffi-room") == 0);
    CHECK(strstr(h.x_headers, "ffi-room") != NULL);
    CHECK(strlen(h.session) == RKM_SESSION_ID_LEN - 1);
    pthread_mutex_unlock(&h.lock);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "ffi-tests/sipp";
    const char *log_dir = argc > 2 ? argv[2] : "target/ffi-tests";
    pthread_mutex_init(&h.lock, NULL);

    rkm_sip_config cfg;
    rkm_sip_config_init(&cfg);
    cfg.local_sip_addr = "127.0.0.1:0";
    cfg.local_rtp_ip = "127.0.0.1";
    cfg.rtp_port_start = (uint16_t)(30000 + (getpid() % 400) * 50);
    cfg.rtp_port_end = (uint16_t)(cfg.rtp_port_start + 49);
    cfg.supported_video_codecs = "H264,VP8";
    h.b = rkm_sip_video_backend_new(&cfg);
    CHECK(h.b != NULL);
    /* Before start: the callbacks are installed when the backend starts. */
    char addr[RKM_ADDR_LEN];
    CHECK(rkm_sip_local_addr(h.b, addr, sizeof addr) == RKM_ERR_STATE);
    CHECK(rkm_connect(h.b, "r", "p", NULL, NULL, addr, sizeof addr) == RKM_ERR_UNSUPPORTED);
    CHECK_OK(rkm_on_call(h.b, on_call, &h));
    CHECK_OK(rkm_on_video_session_ready(h.b, on_video_ready, &h));
    CHECK_OK(rkm_on_client_disconnected(h.b, on_disconnected, &h));
    CHECK(rkm_session_count(h.b) == 0);
    CHECK_OK(rkm_backend_start(h.b));
    CHECK(rkm_backend_start(h.b) == RKM_ERR_STATE);
    CHECK_OK(rkm_sip_local_addr(h.b, addr, sizeof addr));
    CHECK(rkm_connect(h.b, "r", "p", NULL, NULL, addr, sizeof addr) == RKM_ERR_UNSUPPORTED);
    printf("SIP video backend on %s\n", addr);

    /* Call 0: audio only (no m=video in the offer): has_video is false, no video session. */
    pthread_t t;
    sipp_run r;
    start_sipp(&t, &r, dir, log_dir, "uac_audio_only", addr);
    CHECK(wait_for(&h.calls, 1, 10000));
    pthread_mutex_lock(&h.lock);
    CHECK(!h.has_video && h.video_codec[0] == '\0');
    CHECK(strcmp(h.room, "ffi-room") == 0);
    pthread_mutex_unlock(&h.lock);
    CHECK(wait_for(&h.disconnected, 1, 10000));
    pthread_join(t, NULL);
    CHECK(r.exit_code == 0);
    CHECK(atomic_load(&h.video_ready) == 0);
    atomic_store(&h.calls, 0);
    atomic_store(&h.disconnected, 0);

    /* Call 1: sipp calls, then hangs up. */
    start_sipp(&t, &r, dir, log_dir, "uac_av_caller_hangs_up", addr);
    CHECK(wait_for(&h.calls, 1, 10000));
    check_call();
    CHECK(wait_for(&h.video_ready, 1, 2000));
    rkm_stats st;
    char id[RKM_SESSION_ID_LEN];
    pthread_mutex_lock(&h.lock);
    memcpy(id, h.session, sizeof id);
    pthread_mutex_unlock(&h.lock);
    CHECK_OK(rkm_session_stats(h.b, id, &st));
    CHECK(st.has_video && st.video.packets_sent > 0);
    CHECK(wait_for(&h.disconnected, 1, 10000));
    pthread_join(t, NULL);
    CHECK(r.exit_code == 0);
    CHECK(rkm_session_count(h.b) == 0);

    /* Call 2: sipp calls; this side hangs up (BYE), sipp answers 200. */
    start_sipp(&t, &r, dir, log_dir, "uac_av_callee_hangs_up", addr);
    CHECK(wait_for(&h.calls, 2, 10000));
    check_call();
    pthread_mutex_lock(&h.lock);
    memcpy(id, h.session, sizeof id);
    pthread_mutex_unlock(&h.lock);
    CHECK(rkm_session_count(h.b) == 1);
    sleep_ms(scaled_ms(200)); /* let sipp's ACK land before the BYE */
    CHECK_OK(rkm_disconnect(h.b, id));
    CHECK(wait_for(&h.disconnected, 2, 5000));
    pthread_join(t, NULL);
    CHECK(r.exit_code == 0);
    CHECK(rkm_disconnect(h.b, id) == RKM_ERR_NOT_FOUND);

    /* Call 3: still live when the backend is freed, which hangs it up (sipp sees the BYE). */
    start_sipp(&t, &r, dir, log_dir, "uac_av_callee_hangs_up", addr);
    CHECK(wait_for(&h.calls, 3, 10000));
    check_call();
    CHECK(rkm_session_count(h.b) == 1);
    sleep_ms(scaled_ms(200));
    rkm_backend_free(h.b);
    CHECK(atomic_load(&h.disconnected) == 3);
    pthread_join(t, NULL);
    CHECK(r.exit_code == 0);
    CHECK(atomic_load(&h.errors) == 0);

    pthread_mutex_destroy(&h.lock);
    printf("ok: an audio-only call and 3 A/V calls from sipp (has_video, h264, room); BYE from "
           "sipp, from rkm_disconnect and from rkm_backend_free\n");
    return 0;
}
