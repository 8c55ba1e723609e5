/* Calling back into the library from inside callbacks: the receiver echoes every picture back
 * with rkm_send_video, asks for a key frame with rkm_request_keyframe, reads its stats and
 * re-registers a callback, all from its video callback; the sender answers the key frame request
 * by sending an IDR from its keyframe callback; finally the receiver hangs up its own session
 * from inside the callback. Nothing deadlocks and every echo arrives bit-exact. */
#include "common.h"

#define SENT 6          /* pictures the main thread sends */
#define TOTAL (SENT + 1) /* plus the IDR sent from the keyframe callback */

typedef struct {
    rkm_backend *b;
    char session[RKM_SESSION_ID_LEN];
    atomic_int frames;
    atomic_int errors;
    atomic_int keyframe_asked;
    atomic_int disconnected;
    pthread_mutex_t lock;
    uint8_t *got[TOTAL];
    size_t got_len[TOTAL];
} side;

static side sa, sb;
static uint8_t *pictures[TOTAL];
static size_t picture_len[TOTAL];

static void note(side *s, rkm_status st) {
    if (st != RKM_OK) {
        fprintf(stderr, "call inside a callback failed: %s\n", rkm_last_error());
        atomic_fetch_add(&s->errors, 1);
    }
}

static void noop_audio(void *ud, const char *sid, const rkm_audio_frame *f) {
    (void)ud;
    (void)sid;
    (void)f;
}

/* B: echo, ask for a key frame once, read stats, re-register, hang up after the last one. */
static void b_on_video(void *ud, const char *sid, const rkm_video_frame *f) {
    side *s = ud;
    note(s, rkm_send_video(s->b, sid, f->data, f->len));
    if (f->keyframe && atomic_exchange(&s->keyframe_asked, 1) == 0) {
        note(s, rkm_request_keyframe(s->b, sid));
    }
    rkm_stats st;
    note(s, rkm_session_stats(s->b, sid, &st));
    if (st.video.frames < f->sequence + 1) {
        atomic_fetch_add(&s->errors, 1);
    }
    note(s, rkm_on_audio_received(s->b, noop_audio, NULL));
    if (atomic_fetch_add(&s->frames, 1) + 1 == TOTAL) {
        note(s, rkm_disconnect(s->b, sid));
    }
}

/* A: keep the echoes. */
static void a_on_video(void *ud, const char *sid, const rkm_video_frame *f) {
    side *s = ud;
    (void)sid;
    pthread_mutex_lock(&s->lock);
    int i = atomic_load(&s->frames);
    if (i < TOTAL) {
        s->got[i] = malloc(f->len);
        memcpy(s->got[i], f->data, f->len);
        s->got_len[i] = f->len;
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->frames, 1);
}

/* A: the remote wants a key frame; the "encoder" emits one at once, from this callback. Only
 * the first request is answered, so the count of pictures stays known even if a slow run
 * (valgrind) makes the receiver ask again on its own. */
static void a_on_keyframe(void *ud, const char *sid, rkm_keyframe_kind kind) {
    side *s = ud;
    (void)kind;
    if (atomic_fetch_add(&s->keyframe_asked, 1) == 0) {
        note(s, rkm_send_video(s->b, sid, pictures[SENT], picture_len[SENT]));
    }
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    side *s = ud;
    (void)info;
    atomic_fetch_add(&s->disconnected, 1);
}

int main(void) {
    for (int i = 0; i < TOTAL; i++) {
        int key = i == 0 || i == SENT;
        pictures[i] = h264_picture(key, key ? 12000 : 2000, 100u + (uint32_t)i, &picture_len[i]);
    }
    pthread_mutex_init(&sa.lock, NULL);
    rkm_rtp_config cfg = loopback_config();
    sa.b = rkm_rtp_video_backend_new(&cfg);
    sb.b = rkm_rtp_video_backend_new(&cfg);
    CHECK(sa.b != NULL && sb.b != NULL);
    CHECK_OK(rkm_on_video_received(sa.b, a_on_video, &sa));
    CHECK_OK(rkm_on_keyframe_requested(sa.b, a_on_keyframe, &sa));
    CHECK_OK(rkm_on_video_received(sb.b, b_on_video, &sb));
    CHECK_OK(rkm_on_client_disconnected(sb.b, on_disconnected, &sb));
    connect_pair(sa.b, sb.b, sa.session, sb.session);

    for (int i = 0; i < SENT; i++) {
        CHECK_OK(rkm_send_video(sa.b, sa.session, pictures[i], picture_len[i]));
        sleep_ms(scaled_ms(10));
    }
    CHECK(wait_for(&sb.frames, TOTAL, 5000));
    CHECK(wait_for(&sa.frames, TOTAL, 5000));
    CHECK(wait_for(&sb.disconnected, 1, 3000));
    CHECK(atomic_load(&sa.keyframe_asked) >= 1);
    CHECK(atomic_load(&sa.errors) == 0 && atomic_load(&sb.errors) == 0);
    CHECK(rkm_session_count(sb.b) == 0);

    /* Every echo is one of the pictures, each exactly once (the IDR from the callback may
     * overtake pictures the main thread sent). */
    int matched[TOTAL] = {0};
    for (int i = 0; i < TOTAL; i++) {
        int found = 0;
        for (int j = 0; j < TOTAL && !found; j++) {
            if (!matched[j] && sa.got_len[i] == picture_len[j] &&
                memcmp(sa.got[i], pictures[j], picture_len[j]) == 0) {
                matched[j] = found = 1;
            }
        }
        CHECK(found);
    }

    rkm_backend_free(sb.b);
    rkm_backend_free(sa.b);
    for (int i = 0; i < TOTAL; i++) {
        free(pictures[i]);
        free(sa.got[i]);
    }
    pthread_mutex_destroy(&sa.lock);
    printf("ok: %d pictures echoed from inside callbacks, keyframe answered, hang-up inside\n",
           TOTAL);
    return 0;
}
