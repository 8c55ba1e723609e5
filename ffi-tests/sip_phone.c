/* A softphone from C: one SIP video backend registers with a registrar (sipp, checking the
 * digest) and dials another SIP video backend that demands authentication. Checks: the
 * registration's events (registered for the granted time, unregistered at the end, which sipp
 * requires to exit 0); rkm_dial returns a session id at once and rkm_on_call_state reports
 * trying, answered and ended in order; the dialed session carries video to the callee and has
 * its metadata (X-Room-ID); hold and resume reach the callee (it stops, then resumes, sending);
 * video removed and added back with rkm_set_video reaches the callee's session;
 * a call with wrong credentials fails with 403; a call hung up while it rings is cancelled
 * (failed, 487).
 *
 * Usage: sip_phone [SCENARIO_DIR [LOG_DIR]], from the repository root (defaults:
 * ffi-tests/sipp, target/ffi-tests). */
#include "common.h"

#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pthread_mutex_t lock;
    /* The phone's dialed calls: every state seen, in order. */
    call_log log;
    /* Registration events. */
    atomic_int registered;
    atomic_int unregistered;
    atomic_int reg_failed;
    uint32_t expires;
    /* The last failed registration's status and reason, and the last call step's reason. */
    uint32_t reg_status;
    char reg_reason[256];
    char call_reason[256];
    /* The callee. */
    atomic_int calls;
    atomic_int frames;
    atomic_int disconnected;
    char callee_session[RKM_SESSION_ID_LEN];
    char room[64];
} phone;

static phone ph;

static void on_call_state(void *ud, const rkm_call_progress *p) {
    phone *s = ud;
    call_log_add(&s->log, p);
    pthread_mutex_lock(&s->lock);
    if (p->reason != NULL) {
        snprintf(s->call_reason, sizeof s->call_reason, "%s", p->reason);
    }
    pthread_mutex_unlock(&s->lock);
    if (strlen(p->session_id) != RKM_SESSION_ID_LEN - 1 || p->reason == NULL) {
        fprintf(stderr, "bad call progress\n");
        exit(1);
    }
}

static void on_registration(void *ud, const rkm_registration_event *e) {
    phone *s = ud;
    switch (e->state) {
    case RKM_REGISTERED:
        s->expires = e->expires;
        atomic_fetch_add(&s->registered, 1);
        break;
    case RKM_UNREGISTERED:
        atomic_fetch_add(&s->unregistered, 1);
        break;
    case RKM_REGISTRATION_FAILED:
        fprintf(stderr, "registration failed: %u %s\n", e->status, e->reason);
        pthread_mutex_lock(&s->lock);
        s->reg_status = e->status;
        snprintf(s->reg_reason, sizeof s->reg_reason, "%s", e->reason);
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add(&s->reg_failed, 1);
        break;
    }
}

static void on_call(void *ud, const rkm_call_info *c) {
    phone *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->callee_session, sizeof s->callee_session, "%s", c->session_id);
    snprintf(s->room, sizeof s->room, "%s", c->room_id);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->calls, 1);
}

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    phone *s = ud;
    (void)session_id;
    (void)f;
    atomic_fetch_add(&s->frames, 1);
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    phone *s = ud;
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

/* True once something holds UDP `port` on 127.0.0.1 (sipp has bound it). */
static rkm_backend *sip_backend(uint16_t rtp_start, const char *incoming_user,
                                const char *incoming_password) {
    rkm_sip_config cfg = loopback_sip_config(rtp_start);
    cfg.auth_user = incoming_user;
    cfg.auth_password = incoming_password;
    cfg.client_auth_user = "alice";
    cfg.client_auth_password = "s3cret";
    cfg.user = "alice";
    rkm_backend *b = rkm_sip_video_backend_new(&cfg);
    CHECK(b != NULL);
    return b;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "ffi-tests/sipp";
    const char *log_dir = argc > 2 ? argv[2] : "target/ffi-tests";
    pthread_mutex_init(&ph.lock, NULL);
    call_log_init(&ph.log);
    uint16_t rtp = (uint16_t)(40000 + (getpid() % 200) * 100);

    rkm_backend *callee = sip_backend(rtp, "bob", "pw");
    rkm_backend *me = sip_backend((uint16_t)(rtp + 50), NULL, NULL);
    CHECK_OK(rkm_on_call(callee, on_call, &ph));
    CHECK_OK(rkm_on_video_received(callee, on_video, &ph));
    CHECK_OK(rkm_on_client_disconnected(callee, on_disconnected, &ph));
    CHECK_OK(rkm_on_call_state(me, on_call_state, &ph));
    CHECK_OK(rkm_on_registration(me, on_registration, &ph));

    /* Before start: nothing to dial or register from. */
    char id[RKM_SESSION_ID_LEN];
    uint64_t reg;
    CHECK(rkm_dial(me, "sip:bob@127.0.0.1:5060", NULL, id, sizeof id) == RKM_ERR_STATE);
    CHECK(rkm_register(me, "sip:alice@127.0.0.1", NULL, &reg) == RKM_ERR_STATE);
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_backend_start(me));
    char callee_addr[RKM_ADDR_LEN];
    CHECK_OK(rkm_sip_local_addr(callee, callee_addr, sizeof callee_addr));
    CHECK(rkm_dial(me, "mailto:bob@example.com", NULL, id, sizeof id) ==
          RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_dial(me, "sip:bob@127.0.0.1", NULL, id, 8) == RKM_ERR_BUFFER_TOO_SMALL);

    /* The registrar: sipp, on a port of its own. */
    int port = free_peer_port((unsigned)getpid() * 13u);
    sipp_run r;
    snprintf(r.command, sizeof r.command,
             "sipp -sf %s/registrar.xml -m 1 -i 127.0.0.1 -p %d -nostdin -timeout %lds "
             "-timeout_error > %s/registrar.sipp.log 2>&1",
             dir, port, scaled_ms(30000) / 1000, log_dir);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_sipp, &r) == 0);
    double deadline = now_ms() + (double)scaled_ms(10000);
    while (!udp_port_taken(port) && now_ms() < deadline) {
        sleep_ms(10);
    }
    char aor[128];
    snprintf(aor, sizeof aor, "sip:alice@127.0.0.1:%d", port);
    rkm_register_options ro;
    rkm_register_options_init(&ro);
    CHECK(ro.expires == 3600);
    ro.expires = 60;
    CHECK_OK(rkm_register(me, aor, &ro, &reg));
    CHECK(wait_for(&ph.registered, 1, 10000));
    CHECK(ph.expires == 60);
    CHECK(atomic_load(&ph.reg_failed) == 0);

    /* A call to the callee, which challenges: answered with the dial's credentials. */
    char to[128];
    snprintf(to, sizeof to, "sip:bob@%s", callee_addr);
    rkm_dial_options o;
    rkm_dial_options_init(&o);
    o.auth_user = "bob";
    o.auth_password = "pw";
    o.headers = "X-Room-ID: phone-room\nX-Note: from C";
    CHECK_OK(rkm_dial(me, to, &o, id, sizeof id));
    CHECK(strlen(id) == RKM_SESSION_ID_LEN - 1);
    int answered = call_log_wait(&ph.log, 0, RKM_CALL_ANSWERED, 10000);
    CHECK(answered >= 1);
    CHECK(ph.log.states[0] == RKM_CALL_TRYING);
    CHECK(ph.log.status[answered] == 200);
    CHECK(wait_for(&ph.calls, 1, 5000));
    pthread_mutex_lock(&ph.lock);
    CHECK(strcmp(ph.room, "phone-room") == 0);
    char callee_id[RKM_SESSION_ID_LEN];
    memcpy(callee_id, ph.callee_session, sizeof callee_id);
    pthread_mutex_unlock(&ph.lock);

    /* Video from the dialed session reaches the callee. */
    for (int i = 0; i < 5; i++) {
        size_t len;
        uint8_t *p = h264_picture(i == 0, 3000, (uint32_t)i, &len);
        CHECK_OK(rkm_send_video(me, id, p, len));
        free(p);
        sleep_ms(20);
    }
    CHECK(wait_for(&ph.frames, 5, 5000));

    /* Hold: the callee stops sending; resume: it sends again. */
    int16_t pcm[160] = {0};
    rkm_stats st;
    CHECK_OK(rkm_hold(me, id));
    double until = now_ms() + (double)scaled_ms(5000);
    uint64_t before = 0;
    int held = 0;
    while (now_ms() < until && !held) {
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        before = st.audio.packets_sent;
        CHECK_OK(rkm_send_audio(callee, callee_id, pcm, 160));
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        held = st.audio.packets_sent == before;
        sleep_ms(10);
    }
    CHECK(held);
    CHECK_OK(rkm_resume(me, id));
    until = now_ms() + (double)scaled_ms(5000);
    int sending = 0;
    while (now_ms() < until && !sending) {
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        before = st.audio.packets_sent;
        CHECK_OK(rkm_send_audio(callee, callee_id, pcm, 160));
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        sending = st.audio.packets_sent > before;
        sleep_ms(10);
    }
    CHECK(sending);

    /* Video removed with a re-INVITE, then added back: the callee's session follows. */
    CHECK_OK(rkm_session_stats(callee, callee_id, &st));
    CHECK(st.has_video);
    CHECK_OK(rkm_set_video(me, id, false));
    until = now_ms() + (double)scaled_ms(5000);
    while (now_ms() < until) {
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        if (!st.has_video) {
            break;
        }
        sleep_ms(10);
    }
    CHECK(!st.has_video);
    CHECK_OK(rkm_set_video(me, id, true));
    until = now_ms() + (double)scaled_ms(5000);
    while (now_ms() < until) {
        CHECK_OK(rkm_session_stats(callee, callee_id, &st));
        if (st.has_video) {
            break;
        }
        sleep_ms(10);
    }
    CHECK(st.has_video);

    /* We hang up: ended here, disconnected there. */
    CHECK_OK(rkm_disconnect(me, id));
    CHECK(call_log_wait(&ph.log, answered, RKM_CALL_ENDED, 5000) > answered);
    CHECK(wait_for(&ph.disconnected, 1, 5000));
    CHECK(rkm_hold(me, id) == RKM_ERR_NOT_FOUND);

    /* The configured credentials are not the callee's: 403. */
    int mark = call_log_len(&ph.log);
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    int failed = call_log_wait(&ph.log, mark, RKM_CALL_FAILED, 10000);
    CHECK(failed >= mark);
    CHECK(ph.log.status[failed] == 403);

    /* Hung up while it rings: cancelled. The callee rings for 3 s before answering. */
    rkm_backend_free(callee);
    rkm_sip_config cfg = loopback_sip_config(rtp);
    cfg.answer_after_ms = 3000;
    callee = rkm_sip_voice_backend_new(&cfg);
    CHECK(callee != NULL);
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_sip_local_addr(callee, callee_addr, sizeof callee_addr));
    snprintf(to, sizeof to, "sip:bob@%s", callee_addr);
    mark = call_log_len(&ph.log);
    CHECK_OK(rkm_dial(me, to, NULL, id, sizeof id));
    CHECK(call_log_wait(&ph.log, mark, RKM_CALL_RINGING, 5000) >= mark);
    CHECK_OK(rkm_disconnect(me, id));
    failed = call_log_wait(&ph.log, mark, RKM_CALL_FAILED, 10000);
    CHECK(failed >= mark);
    CHECK(ph.log.status[failed] == 487);

    /* Unregister: sipp gets Expires: 0 and ends its scenario. */
    CHECK_OK(rkm_unregister(me, reg));
    CHECK(wait_for(&ph.unregistered, 1, 10000));
    CHECK(rkm_unregister(me, reg) == RKM_ERR_NOT_FOUND);
    pthread_join(t, NULL);
    CHECK(r.exit_code == 0);

    /* Over TCP to a port nobody listens on (1): the call and the REGISTER fail at once with 503
     * and the transport's reason, not after timer B/F's 32 s. */
    mark = call_log_len(&ph.log);
    double began = now_ms();
    CHECK_OK(rkm_dial(me, "sip:nobody@127.0.0.1:1;transport=tcp", NULL, id, sizeof id));
    failed = call_log_wait(&ph.log, mark, RKM_CALL_FAILED, 10000);
    CHECK(failed >= mark);
    CHECK(ph.log.status[failed] == 503);
    pthread_mutex_lock(&ph.lock);
    CHECK(strstr(ph.call_reason, "refused") != NULL);
    pthread_mutex_unlock(&ph.lock);
    uint64_t dead_reg = 0;
    CHECK_OK(rkm_register(me, "sip:alice@127.0.0.1:1;transport=tcp", NULL, &dead_reg));
    CHECK(wait_for(&ph.reg_failed, 1, 10000));
    CHECK(now_ms() - began < (double)scaled_ms(10000));
    pthread_mutex_lock(&ph.lock);
    CHECK(ph.reg_status == 503 && strstr(ph.reg_reason, "refused") != NULL);
    pthread_mutex_unlock(&ph.lock);
    CHECK_OK(rkm_unregister(me, dead_reg));
    CHECK(wait_for(&ph.unregistered, 2, 10000));

    rkm_backend_free(me);
    rkm_backend_free(callee);
    call_log_destroy(&ph.log);
    pthread_mutex_destroy(&ph.lock);
    printf("ok: registered with sipp (digest, 60 s) and unregistered; dialed with 401 auth, "
           "video to the callee, hold/resume, video removed and added, hang-up; 403 with wrong "
           "credentials; CANCEL while ringing; a call and a REGISTER over TCP to a closed port "
           "fail at once with 503 and the reason\n");
    return 0;
}
