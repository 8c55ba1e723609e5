/* What the Python package needs of the C API, from C: rkm_set_video_passthrough and
 * rkm_hangup_with. Checks: passthrough lets a session receive pictures that the keyframe gate
 * would hold back (a stream of non-key pictures), on that session only; its bad arguments are
 * refused (NULL, unknown session, a voice backend). rkm_hangup_with puts
 * `Reason: Q.850;cause=N;text="..."` on the BYE (seen by the far end's SIP trace), quotes
 * escaped; a text with a line break or a cause above 127 is refused and leaves the call up; it
 * is refused on an RTP backend.
 *
 * Usage: roomkit_gaps (no arguments). */
#include "common.h"

#include <unistd.h>

typedef struct {
    pthread_mutex_t lock;
    char on_id[RKM_SESSION_ID_LEN];
    atomic_int frames_on;
    atomic_int frames_other;
    /* The callee's SIP side: answered calls, and the first BYE received. */
    atomic_int calls;
    atomic_int byes;
    char bye[4096];
    /* The caller's side: the steps of its dialed call. */
    call_log dialed;
} host;

static host h;

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    host *s = ud;
    (void)f;
    if (strcmp(session_id, s->on_id) == 0) {
        atomic_fetch_add(&s->frames_on, 1);
    } else {
        atomic_fetch_add(&s->frames_other, 1);
    }
}

static void on_trace(void *ud, bool outbound, const char *peer, const uint8_t *data, size_t len) {
    host *s = ud;
    (void)peer;
    if (outbound || data == NULL || len < 4 || memcmp(data, "BYE ", 4) != 0) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (atomic_load(&s->byes) == 0) {
        size_t n = len < sizeof s->bye - 1 ? len : sizeof s->bye - 1;
        memcpy(s->bye, data, n);
        s->bye[n] = 0;
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->byes, 1);
}

static void on_call(void *ud, const rkm_call_info *c) {
    (void)c;
    atomic_fetch_add(&((host *)ud)->calls, 1);
}

static void passthrough(void) {
    rkm_rtp_config cfg = loopback_config();
    rkm_backend *rx = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *tx = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *voice = rkm_rtp_voice_backend_new(&cfg);
    CHECK(rx != NULL && tx != NULL && voice != NULL);
    CHECK_OK(rkm_on_video_received(rx, on_video, &h));
    char rx_on[RKM_SESSION_ID_LEN], rx_off[RKM_SESSION_ID_LEN];
    char tx_on[RKM_SESSION_ID_LEN], tx_off[RKM_SESSION_ID_LEN], v_id[RKM_SESSION_ID_LEN];
    connect_pair(rx, tx, rx_on, tx_on);
    connect_pair(rx, tx, rx_off, tx_off);
    pthread_mutex_lock(&h.lock);
    snprintf(h.on_id, sizeof h.on_id, "%s", rx_on);
    pthread_mutex_unlock(&h.lock);

    CHECK_OK(rkm_set_video_passthrough(rx, rx_on, true));
    CHECK(rkm_set_video_passthrough(NULL, rx_on, true) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_set_video_passthrough(rx, NULL, true) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_set_video_passthrough(rx, "00000000-0000-4000-8000-000000000000", true) ==
          RKM_ERR_NOT_FOUND);
    CHECK_OK(rkm_connect(voice, "room", "v", "127.0.0.1:9", NULL, v_id, sizeof v_id));
    CHECK(rkm_set_video_passthrough(voice, v_id, true) == RKM_ERR_UNSUPPORTED);

    /* Non-key pictures only: the keyframe gate holds every one back, except with passthrough. */
    for (int i = 0; i < 20; i++) {
        size_t len;
        uint8_t *pic = h264_picture(0, 2000, (uint32_t)i, &len);
        CHECK_OK(rkm_send_video(tx, tx_on, pic, len));
        CHECK_OK(rkm_send_video(tx, tx_off, pic, len));
        free(pic);
        sleep_ms(scaled_ms(10));
    }
    CHECK(wait_for(&h.frames_on, 5, 5000));
    sleep_ms(scaled_ms(200));
    CHECK(atomic_load(&h.frames_other) == 0);
    /* Off again: the backend's settings are back (and the call is harmless twice). */
    CHECK_OK(rkm_set_video_passthrough(rx, rx_on, false));
    CHECK_OK(rkm_set_video_passthrough(rx, rx_on, false));
    CHECK(rkm_hangup_with(rx, rx_on, 16, NULL) == RKM_ERR_UNSUPPORTED);

    rkm_backend_free(voice);
    rkm_backend_free(tx);
    rkm_backend_free(rx);
}

static void reason(void) {
    uint16_t rtp = (uint16_t)(31000 + (getpid() % 200) * 100);
    rkm_backend *callee = loopback_sip_voice_backend(rtp);
    rkm_backend *me = loopback_sip_voice_backend((uint16_t)(rtp + 50));
    CHECK_OK(rkm_on_call(callee, on_call, &h));
    CHECK_OK(rkm_sip_set_trace(callee, on_trace, &h));
    CHECK_OK(rkm_on_call_state(me, record_call_state, &h.dialed));
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_backend_start(me));
    char addr[RKM_ADDR_LEN], to[128], id[RKM_SESSION_ID_LEN];
    CHECK_OK(rkm_sip_local_addr(callee, addr, sizeof addr));
    snprintf(to, sizeof to, "sip:bob@%s", addr);
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    CHECK(wait_for(&h.calls, 1, 5000));
    /* Hang up only once the caller has seen the 200 OK: earlier, the hangup would be a CANCEL. */
    CHECK(call_log_wait(&h.dialed, 0, RKM_CALL_ANSWERED, 5000) >= 0);

    CHECK(rkm_hangup_with(me, id, 16, "bye\r\nX-Injected: 1") == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_hangup_with(me, id, 200, NULL) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_hangup_with(me, NULL, 16, NULL) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_hangup_with(NULL, id, 16, NULL) == RKM_ERR_INVALID_ARGUMENT);
    sleep_ms(scaled_ms(100));
    CHECK(atomic_load(&h.byes) == 0); /* the refused calls left it up */
    CHECK_OK(rkm_hangup_with(me, id, 21, "Call \"rejected\""));
    CHECK(wait_for(&h.byes, 1, 5000));
    pthread_mutex_lock(&h.lock);
    CHECK(strstr(h.bye, "\r\nReason: Q.850;cause=21;text=\"Call \\\"rejected\\\"\"\r\n") != NULL);
    CHECK(strstr(h.bye, "X-Injected") == NULL);
    pthread_mutex_unlock(&h.lock);
    /* The call is gone once the SIP thread has ended it. */
    double deadline = now_ms() + (double)scaled_ms(2000);
    while (rkm_hangup_with(me, id, 16, NULL) != RKM_ERR_NOT_FOUND) {
        CHECK(now_ms() < deadline);
        sleep_ms(5);
    }

    rkm_backend_free(me);
    rkm_backend_free(callee);
}

int main(void) {
    pthread_mutex_init(&h.lock, NULL);
    call_log_init(&h.dialed);
    passthrough();
    reason();
    call_log_destroy(&h.dialed);
    pthread_mutex_destroy(&h.lock);
    printf("roomkit_gaps: ok\n");
    return 0;
}
