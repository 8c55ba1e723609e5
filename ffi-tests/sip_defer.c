/* Deferred invite decisions from C: a SIP backend whose invite filter defers every call
 * (RKM_CALL_DEFER) and decides later with rkm_sip_decide_call, as an application that looks the
 * caller up somewhere slow would. Another backend in this program dials it. Checks: a deferred
 * call rings and is not answered until decided; decided 200 it is answered (on_call fires);
 * decided 486 the caller fails with 486; left undecided it is refused with 408 after
 * decision_timeout_ms, not before; a late decision, a bad status or a NULL Call-ID change
 * nothing; a filter that refuses at once (403) still works; a call answered after a deferral
 * carries audio; with no filter calls are answered at once; rkm_dial_options.audio_codecs
 * limits what one call offers; the SIP trace (rkm_sip_set_trace) sees the INVITE come in and
 * the 180 and 200 go out, and nothing once removed.
 *
 * Usage: sip_defer (no arguments). */
#include "common.h"

#include <unistd.h>

#define DECISION_MS 1500

typedef struct {
    pthread_mutex_t lock;
    /* The callee's filter: Call-IDs it deferred, in order. */
    char call_ids[8][128];
    atomic_int filtered;
    /* The callee's answered calls. */
    atomic_int calls;
    char audio_codec[16];
    atomic_int audio_frames;
    /* The caller's dialed calls: every state and status, in order. */
    call_log log;
    /* The callee's SIP trace: INVITEs in, 180s and 200s out, messages with no peer. */
    atomic_int traced_invites;
    atomic_int traced_180;
    atomic_int traced_200;
    atomic_int traced_bad;
} host;

static host h;

static int32_t filter(void *ud, const rkm_incoming_call *c) {
    host *s = ud;
    if (strstr(c->x_headers, "X-Refuse: now") != NULL) {
        return 403;
    }
    pthread_mutex_lock(&s->lock);
    int n = atomic_load(&s->filtered);
    if (n < 8) {
        snprintf(s->call_ids[n], sizeof s->call_ids[n], "%s", c->call_id);
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->filtered, 1);
    return RKM_CALL_DEFER;
}

static void on_trace(void *ud, bool outbound, const char *peer, const uint8_t *data, size_t len) {
    host *s = ud;
    if (peer == NULL || strncmp(peer, "127.0.0.1:", 10) != 0 || data == NULL || len < 12) {
        atomic_fetch_add(&s->traced_bad, 1);
        return;
    }
    if (!outbound && memcmp(data, "INVITE ", 7) == 0) {
        atomic_fetch_add(&s->traced_invites, 1);
    } else if (outbound && memcmp(data, "SIP/2.0 180", 11) == 0) {
        atomic_fetch_add(&s->traced_180, 1);
    } else if (outbound && memcmp(data, "SIP/2.0 200", 11) == 0) {
        atomic_fetch_add(&s->traced_200, 1);
    }
}

static void on_call(void *ud, const rkm_call_info *c) {
    host *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->audio_codec, sizeof s->audio_codec, "%s", c->audio_codec);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->calls, 1);
}

static void on_audio(void *ud, const char *session_id, const rkm_audio_frame *f) {
    (void)session_id;
    (void)f;
    atomic_fetch_add(&((host *)ud)->audio_frames, 1);
}

static int has_state(int from, int state) {
    pthread_mutex_lock(&h.log.lock);
    int n = call_log_len(&h.log), found = 0;
    for (int i = from; i < n; i++) {
        found |= h.log.states[i] == state;
    }
    pthread_mutex_unlock(&h.log.lock);
    return found;
}

static rkm_backend *backend(uint16_t rtp_start) {
    rkm_sip_config cfg = loopback_sip_config(rtp_start);
    cfg.decision_timeout_ms = (uint32_t)scaled_ms(DECISION_MS);
    /* Under valgrind the SIP thread lags: overload control would refuse the INVITEs (503). */
    cfg.overload_max_backlog_ms = 0;
    rkm_backend *b = rkm_sip_voice_backend_new(&cfg);
    CHECK(b != NULL);
    return b;
}

static void call_id(int i, char *out, size_t cap) {
    pthread_mutex_lock(&h.lock);
    snprintf(out, cap, "%s", h.call_ids[i]);
    pthread_mutex_unlock(&h.lock);
}

int main(void) {
    pthread_mutex_init(&h.lock, NULL);
    call_log_init(&h.log);
    uint16_t rtp = (uint16_t)(30000 + (getpid() % 200) * 100);
    rkm_backend *callee = backend(rtp);
    rkm_backend *me = backend((uint16_t)(rtp + 50));
    CHECK(rkm_sip_set_invite_filter(NULL, filter, &h) == RKM_ERR_INVALID_ARGUMENT);
    CHECK_OK(rkm_sip_set_invite_filter(callee, filter, &h));
    CHECK_OK(rkm_on_call(callee, on_call, &h));
    CHECK_OK(rkm_on_audio_received(callee, on_audio, &h));
    CHECK_OK(rkm_on_call_state(me, record_call_state, &h.log));
    CHECK_OK(rkm_sip_set_trace(callee, on_trace, &h));
    CHECK(rkm_sip_decide_call(callee, "x", 200) == RKM_ERR_STATE);
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_backend_start(me));
    char addr[RKM_ADDR_LEN], to[128], id[RKM_SESSION_ID_LEN], cid[128];
    CHECK_OK(rkm_sip_local_addr(callee, addr, sizeof addr));
    snprintf(to, sizeof to, "sip:bob@%s", addr);

    /* 1. Deferred, then answered: rings, is not answered while undecided, then is. */
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    CHECK(wait_for(&h.filtered, 1, 5000));
    CHECK(call_log_wait(&h.log, 0, RKM_CALL_RINGING, 5000) >= 0);
    sleep_ms(300);
    CHECK(!has_state(0, RKM_CALL_ANSWERED) && atomic_load(&h.calls) == 0);
    call_id(0, cid, sizeof cid);
    CHECK_OK(rkm_sip_decide_call(callee, cid, 200));
    CHECK(call_log_wait(&h.log, 0, RKM_CALL_ANSWERED, 5000) >= 0);
    CHECK(wait_for(&h.calls, 1, 5000));
    /* The answered call is an ordinary call: its audio arrives. */
    int16_t pcm[160 * 10] = {0};
    for (int i = 0; i < 160 * 10; i++) {
        pcm[i] = (int16_t)((i % 40) * 500 - 10000);
    }
    CHECK_OK(rkm_send_audio(me, id, pcm, 160 * 10));
    CHECK(wait_for(&h.audio_frames, 3, 5000));
    /* The SIP trace saw the INVITE come in, and the 180 and the 200 go out. */
    CHECK(atomic_load(&h.traced_invites) >= 1 && atomic_load(&h.traced_180) >= 1);
    CHECK(atomic_load(&h.traced_200) >= 1 && atomic_load(&h.traced_bad) == 0);
    CHECK_OK(rkm_disconnect(me, id));

    /* 2. Deferred, then refused with 486. */
    int mark = call_log_len(&h.log);
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    CHECK(wait_for(&h.filtered, 2, 5000));
    call_id(1, cid, sizeof cid);
    CHECK_OK(rkm_sip_decide_call(callee, cid, 486));
    int failed = call_log_wait(&h.log, mark, RKM_CALL_FAILED, 5000);
    CHECK(failed >= mark && h.log.status[failed] == 486);

    /* 3. Left undecided: 408 after the decision timeout, not before. */
    mark = call_log_len(&h.log);
    double start = now_ms();
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    CHECK(wait_for(&h.filtered, 3, 5000));
    failed = call_log_wait(&h.log, mark, RKM_CALL_FAILED, DECISION_MS + 10000);
    CHECK(failed >= mark && h.log.status[failed] == 408);
    CHECK(now_ms() - start >= DECISION_MS - 50);
    /* A late decision changes nothing; bad arguments are refused. */
    call_id(2, cid, sizeof cid);
    CHECK_OK(rkm_sip_decide_call(callee, cid, 200));
    CHECK(rkm_sip_decide_call(callee, cid, 100) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_sip_decide_call(callee, NULL, 200) == RKM_ERR_INVALID_ARGUMENT);
    sleep_ms(200);
    CHECK(atomic_load(&h.calls) == 1);

    /* 4. The filter may still refuse at once. */
    mark = call_log_len(&h.log);
    rkm_dial_options o;
    rkm_dial_options_init(&o);
    o.headers = "X-Refuse: now";
    CHECK_OK(rkm_dial(me, to, &o, id, sizeof id));
    failed = call_log_wait(&h.log, mark, RKM_CALL_FAILED, 5000);
    CHECK(failed >= mark && h.log.status[failed] == 403);
    CHECK(atomic_load(&h.filtered) == 3);

    /* Without the trace, nothing more is traced. */
    CHECK_OK(rkm_sip_set_trace(callee, NULL, NULL));
    int traced = atomic_load(&h.traced_invites);
    /* Removing the filter: calls are answered at once again. This one offers PCMA alone
     * (rkm_dial_options.audio_codecs), so the callee, which prefers Opus, takes PCMA. */
    CHECK_OK(rkm_sip_set_invite_filter(callee, NULL, NULL));
    mark = call_log_len(&h.log);
    rkm_dial_options_init(&o);
    o.audio_codecs = "PCMA";
    CHECK_OK(rkm_dial(me, to, &o, id, sizeof id));
    CHECK(call_log_wait(&h.log, mark, RKM_CALL_ANSWERED, 5000) >= mark);
    CHECK(wait_for(&h.calls, 2, 5000));
    pthread_mutex_lock(&h.lock);
    CHECK(strcmp(h.audio_codec, "PCMA") == 0);
    pthread_mutex_unlock(&h.lock);
    CHECK(atomic_load(&h.traced_invites) == traced);
    o.audio_codecs = "nonsense";
    CHECK(rkm_dial(me, to, &o, id, sizeof id) == RKM_ERR_INVALID_ARGUMENT);

    rkm_backend_free(me);
    rkm_backend_free(callee);
    call_log_destroy(&h.log);
    pthread_mutex_destroy(&h.lock);
    printf("sip_defer: ok\n");
    return 0;
}
