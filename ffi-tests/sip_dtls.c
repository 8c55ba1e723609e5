/* ICE + DTLS-SRTP in a SIP call between two C backends (rkm_sip_config.ice, dtls_srtp,
 * stun_server). Checks: an unknown dtls_srtp value or an unreadable stun_server is refused; a
 * call between two backends with ice and RKM_DTLS_SRTP_MANDATORY is answered, both streams of
 * both sides are keyed by their handshakes over an ICE pair (rkm_stream_stats.dtls_state 3,
 * ice_state 3); pictures reach the callee; a caller without DTLS-SRTP gets 488.
 *
 * Usage: sip_dtls, from anywhere. */
#include "common.h"

#include <unistd.h>

typedef struct {
    pthread_mutex_t lock;
    call_log log;
    atomic_int calls;
    atomic_int frames;
    char callee_session[RKM_SESSION_ID_LEN];
} state;

static state st;

static void on_call(void *ud, const rkm_call_info *c) {
    state *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->callee_session, sizeof s->callee_session, "%s", c->session_id);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->calls, 1);
}

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    state *s = ud;
    (void)session_id;
    (void)f;
    atomic_fetch_add(&s->frames, 1);
}

static rkm_backend *backend(uint16_t rtp, uint32_t dtls_srtp) {
    rkm_sip_config cfg = loopback_sip_config(rtp);
    cfg.overload_max_backlog_ms = 0;
    cfg.ice = dtls_srtp != RKM_DTLS_SRTP_OFF;
    cfg.dtls_srtp = dtls_srtp;
    rkm_backend *b = rkm_sip_video_backend_new(&cfg);
    CHECK(b != NULL);
    return b;
}

/* Whether both streams of `id` on `b` are keyed by DTLS over an ICE pair. */
static int keyed(rkm_backend *b, const char *id) {
    rkm_stats s;
    if (rkm_session_stats(b, id, &s) != RKM_OK) {
        return 0;
    }
    return s.has_video && s.audio.dtls_state == 3 && s.video.dtls_state == 3 &&
           s.audio.ice_state == 3 && s.video.ice_state == 3;
}

int main(void) {
    pthread_mutex_init(&st.lock, NULL);
    call_log_init(&st.log);
    uint16_t rtp = (uint16_t)(44000 + (getpid() % 100) * 120);

    /* Bad settings are refused with RKM_ERR_INVALID_ARGUMENT. */
    rkm_sip_config bad = loopback_sip_config(rtp);
    bad.dtls_srtp = 3;
    CHECK(rkm_sip_video_backend_new(&bad) == NULL);
    bad.dtls_srtp = RKM_DTLS_SRTP_OPTIONAL;
    bad.stun_server = "not an address";
    CHECK(rkm_sip_video_backend_new(&bad) == NULL);
    bad.stun_server = "192.0.2.1:3478";
    rkm_backend *ok = rkm_sip_video_backend_new(&bad);
    CHECK(ok != NULL);
    rkm_backend_free(ok);

    rkm_backend *callee = backend(rtp, RKM_DTLS_SRTP_MANDATORY);
    rkm_backend *caller = backend((uint16_t)(rtp + 40), RKM_DTLS_SRTP_MANDATORY);
    rkm_backend *plain = backend((uint16_t)(rtp + 80), RKM_DTLS_SRTP_OFF);
    CHECK_OK(rkm_on_call(callee, on_call, &st));
    CHECK_OK(rkm_on_video_received(callee, on_video, &st));
    CHECK_OK(rkm_on_call_state(caller, record_call_state, &st.log));
    CHECK_OK(rkm_on_call_state(plain, record_call_state, &st.log));
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_backend_start(caller));
    CHECK_OK(rkm_backend_start(plain));
    char callee_addr[RKM_ADDR_LEN];
    CHECK_OK(rkm_sip_local_addr(callee, callee_addr, sizeof callee_addr));
    char to[128];
    snprintf(to, sizeof to, "sip:room@%s", callee_addr);

    /* The secured call. */
    char id[RKM_SESSION_ID_LEN];
    CHECK_OK(rkm_dial(caller, to, NULL, id, sizeof id));
    int answered = call_log_wait(&st.log, 0, RKM_CALL_ANSWERED, 10000);
    CHECK(answered >= 1);
    CHECK(wait_for(&st.calls, 1, 5000));
    char callee_id[RKM_SESSION_ID_LEN];
    pthread_mutex_lock(&st.lock);
    memcpy(callee_id, st.callee_session, sizeof callee_id);
    pthread_mutex_unlock(&st.lock);
    double deadline = now_ms() + (double)scaled_ms(10000);
    while (!(keyed(caller, id) && keyed(callee, callee_id)) && now_ms() < deadline) {
        sleep_ms(10);
    }
    CHECK(keyed(caller, id) && keyed(callee, callee_id));
    /* Pictures until the callee has 10 (bounded: 150 at 20 ms). */
    for (uint32_t i = 0; i < 150 && atomic_load(&st.frames) < 10; i++) {
        size_t len;
        uint8_t *p = h264_picture(i % 15 == 0, 1500, i, &len);
        CHECK_OK(rkm_send_video(caller, id, p, len));
        free(p);
        sleep_ms(20);
    }
    CHECK(atomic_load(&st.frames) >= 10);
    rkm_stats s;
    CHECK_OK(rkm_session_stats(callee, callee_id, &s));
    CHECK(s.video.srtp_auth_failed == 0 && s.video.stun_refused == 0);
    CHECK_OK(rkm_disconnect(caller, id));
    CHECK(call_log_wait(&st.log, answered, RKM_CALL_ENDED, 5000) > answered);

    /* A caller without DTLS-SRTP: 488. */
    int mark = call_log_len(&st.log);
    CHECK_OK(rkm_dial(plain, to, NULL, id, sizeof id));
    int failed = call_log_wait(&st.log, mark, RKM_CALL_FAILED, 10000);
    CHECK(failed >= mark);
    CHECK(st.log.status[failed] == 488);

    rkm_backend_free(plain);
    rkm_backend_free(caller);
    rkm_backend_free(callee);
    call_log_destroy(&st.log);
    pthread_mutex_destroy(&st.lock);
    printf("ok: ICE + DTLS-SRTP call keyed on both streams of both sides, %d pictures; a plain "
           "caller got 488; bad settings refused\n",
           atomic_load(&st.frames));
    return 0;
}
