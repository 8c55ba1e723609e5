/* Inbound digest passwords from the application: a SIP backend with no configured user gets a
 * resolver (rkm_sip_set_auth_resolver), which turns authentication on; another backend in this
 * program dials it. Checks: the right password is answered and the resolver saw the user; a
 * wrong password, an unknown user and a password too long for the buffer are refused (403);
 * with the resolver removed, calls are answered without authentication again.
 *
 * Usage: sip_auth_resolver (no arguments). */
#include "common.h"

#include <unistd.h>

typedef struct {
    pthread_mutex_t lock;
    atomic_int asked;
    char last_user[64];
    atomic_int calls;
    /* The caller's dialed calls: every state and status, in order. */
    call_log log;
} host;

static host h;

static bool resolve(void *ud, const char *user, char *out, size_t cap) {
    host *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->last_user, sizeof s->last_user, "%s", user);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->asked, 1);
    if (strcmp(user, "alice") == 0) {
        snprintf(out, cap, "%s", "s3cret");
        return true;
    }
    if (strcmp(user, "huge") == 0) {
        memset(out, 'x', cap); /* no NUL: does not fit */
        return true;
    }
    return false;
}

static void on_call(void *ud, const rkm_call_info *c) {
    (void)c;
    atomic_fetch_add(&((host *)ud)->calls, 1);
}

/* Dials `to` as `user`/`password` and returns the final status: 200 answered, else the
 * failure's. */
static int dial_as(rkm_backend *me, const char *to, const char *user, const char *password) {
    int mark = call_log_len(&h.log);
    rkm_dial_options o;
    rkm_dial_options_init(&o);
    o.auth_user = user;
    o.auth_password = password;
    char id[RKM_SESSION_ID_LEN];
    CHECK_OK(rkm_dial(me, to, &o, id, sizeof id));
    double deadline = now_ms() + (double)scaled_ms(10000);
    while (now_ms() < deadline) {
        int a = call_log_wait(&h.log, mark, RKM_CALL_ANSWERED, 2);
        if (a >= 0) {
            CHECK_OK(rkm_disconnect(me, id));
            return 200;
        }
        int f = call_log_wait(&h.log, mark, RKM_CALL_FAILED, 2);
        if (f >= 0) {
            return h.log.status[f];
        }
    }
    return -1;
}

int main(void) {
    pthread_mutex_init(&h.lock, NULL);
    call_log_init(&h.log);
    uint16_t rtp = (uint16_t)(30000 + (getpid() % 200) * 100);
    rkm_backend *callee = loopback_sip_voice_backend(rtp);
    rkm_backend *me = loopback_sip_voice_backend((uint16_t)(rtp + 50));
    CHECK(rkm_sip_set_auth_resolver(NULL, resolve, &h) == RKM_ERR_INVALID_ARGUMENT);
    CHECK_OK(rkm_sip_set_auth_resolver(callee, resolve, &h));
    CHECK_OK(rkm_on_call(callee, on_call, &h));
    CHECK_OK(rkm_on_call_state(me, record_call_state, &h.log));
    CHECK_OK(rkm_backend_start(callee));
    CHECK_OK(rkm_backend_start(me));
    char addr[RKM_ADDR_LEN], to[128];
    CHECK_OK(rkm_sip_local_addr(callee, addr, sizeof addr));
    snprintf(to, sizeof to, "sip:bob@%s", addr);

    CHECK(dial_as(me, to, "alice", "s3cret") == 200);
    CHECK(wait_for(&h.calls, 1, 5000));
    pthread_mutex_lock(&h.lock);
    CHECK(strcmp(h.last_user, "alice") == 0);
    pthread_mutex_unlock(&h.lock);
    CHECK(dial_as(me, to, "alice", "guess") == 403);
    CHECK(dial_as(me, to, "mallory", "s3cret") == 403);
    CHECK(dial_as(me, to, "huge", "x") == 403);
    CHECK(atomic_load(&h.calls) == 1);

    /* Without the resolver (and no configured user): no authentication. */
    CHECK_OK(rkm_sip_set_auth_resolver(callee, NULL, NULL));
    int asked = atomic_load(&h.asked);
    CHECK(dial_as(me, to, "anyone", "anything") == 200);
    CHECK(wait_for(&h.calls, 2, 5000));
    CHECK(atomic_load(&h.asked) == asked);

    rkm_backend_free(me);
    rkm_backend_free(callee);
    call_log_destroy(&h.log);
    pthread_mutex_destroy(&h.lock);
    printf("sip_auth_resolver: ok\n");
    return 0;
}
