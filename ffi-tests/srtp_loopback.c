/* SRTP keys given from C (`rkm_connect_with`): two RTP video backends on loopback exchange audio
 * and video over SRTP (a different suite per stream) and the pictures arrive bit-exact; with a
 * wrong key on one side, packets are counted in srtp_auth_failed and no frame is delivered; bad
 * keys and misplaced options are refused with RKM_ERR_INVALID_ARGUMENT, naming the field and
 * never the key. */
#include "common.h"

#define PICTURES 6

/* 30-byte AES-CM keys (master key || salt) and a 28-byte GCM key, base64 as SDES carries them. */
#define KEY_A "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
#define KEY_B "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
#define KEY_WRONG "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
#define GCM_A "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQ=="
#define GCM_B "ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZA=="
#define CM80 "AES_CM_128_HMAC_SHA1_80"
#define GCM "AEAD_AES_128_GCM"

typedef struct {
    pthread_mutex_t lock;
    atomic_int frames;
    atomic_int audio_frames;
    atomic_int ready;
    uint8_t *data[PICTURES];
    size_t len[PICTURES];
    char audio_srtp[32];
    char video_srtp[32];
    char session[RKM_SESSION_ID_LEN];
} side;

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    side *s = ud;
    (void)session_id;
    pthread_mutex_lock(&s->lock);
    int i = atomic_load(&s->frames);
    if (i < PICTURES) {
        s->data[i] = malloc(f->len);
        memcpy(s->data[i], f->data, f->len);
        s->len[i] = f->len;
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->frames, 1);
}

static void on_audio(void *ud, const char *session_id, const rkm_audio_frame *f) {
    side *s = ud;
    (void)session_id;
    (void)f;
    atomic_fetch_add(&s->audio_frames, 1);
}

static void on_ready(void *ud, const rkm_session_info *info) {
    side *s = ud;
    pthread_mutex_lock(&s->lock);
    snprintf(s->audio_srtp, sizeof s->audio_srtp, "%s", info->audio_srtp ? info->audio_srtp : "");
    snprintf(s->video_srtp, sizeof s->video_srtp, "%s", info->video_srtp ? info->video_srtp : "");
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->ready, 1);
}

static rkm_backend *video_backend(side *s) {
    rkm_rtp_config cfg = loopback_config();
    rkm_backend *b = rkm_rtp_video_backend_new(&cfg);
    CHECK(b != NULL);
    CHECK_OK(rkm_on_video_received(b, on_video, s));
    CHECK_OK(rkm_on_audio_received(b, on_audio, s));
    /* video_session_ready carries both streams' suites (session_ready may come before video). */
    CHECK_OK(rkm_on_video_session_ready(b, on_ready, s));
    return b;
}

static void keys(rkm_srtp_keys *k, const char *suite, const char *send, const char *recv) {
    k->suite = suite;
    k->send_key = send;
    k->recv_key = recv;
}

/* As common.h's connect_pair, with each side's options (addresses filled in here). */
static void connect_keyed(rkm_backend *a, side *sa, rkm_connect_options oa, rkm_backend *b,
                          side *sb, rkm_connect_options ob) {
    oa.remote_addr = "127.0.0.1:9";
    oa.video_remote_addr = "127.0.0.1:9";
    CHECK_OK(rkm_connect_with(a, "room-a", "alice", &oa, sa->session, RKM_SESSION_ID_LEN));
    rkm_session_addrs aa;
    CHECK_OK(rkm_session_addresses(a, sa->session, &aa));
    ob.remote_addr = aa.local_addr;
    ob.video_remote_addr = aa.video_local_addr;
    CHECK_OK(rkm_connect_with(b, "room-b", "bob", &ob, sb->session, RKM_SESSION_ID_LEN));
    rkm_session_addrs ba;
    CHECK_OK(rkm_session_addresses(b, sb->session, &ba));
    CHECK_OK(rkm_update_remote(a, sa->session, ba.local_addr, ba.video_local_addr));
    CHECK(wait_for(&sa->ready, 1, 2000) && wait_for(&sb->ready, 1, 2000));
}

/* Sends the pictures and 100 ms of audio from a to b. */
static void send_media(rkm_backend *a, const char *session, uint8_t *pics[PICTURES],
                       size_t lens[PICTURES]) {
    for (int i = 0; i < PICTURES; i++) {
        CHECK_OK(rkm_send_video(a, session, pics[i], lens[i]));
        sleep_ms(scaled_ms(5));
    }
    int16_t pcm[800];
    for (int i = 0; i < 800; i++) {
        pcm[i] = (int16_t)((i % 40) * 400 - 8000);
    }
    CHECK_OK(rkm_send_audio(a, session, pcm, 800));
}

/* The call fails with RKM_ERR_INVALID_ARGUMENT and a message that contains `needle` but no key. */
static void refused(rkm_status st, const char *needle) {
    const char *e = rkm_last_error();
    if (st != RKM_ERR_INVALID_ARGUMENT || e == NULL || strstr(e, needle) == NULL ||
        strstr(e, KEY_A) != NULL || strstr(e, "AAECAw") != NULL) {
        fprintf(stderr, "expected RKM_ERR_INVALID_ARGUMENT mentioning \"%s\", got %d: %s\n",
                needle, (int)st, e ? e : "(null)");
        exit(1);
    }
}

static void bad_arguments(void) {
    rkm_rtp_config cfg = loopback_config();
    rkm_backend *voice = rkm_rtp_voice_backend_new(&cfg);
    rkm_backend *video = rkm_rtp_video_backend_new(&cfg);
    CHECK(voice != NULL && video != NULL);
    char id[RKM_SESSION_ID_LEN];
    rkm_connect_options o;
    rkm_connect_options_init(NULL); /* ignored, recorded */
    CHECK(strstr(rkm_last_error(), "opts is NULL") != NULL);
    rkm_connect_options_init(&o);
    CHECK(o.remote_addr == NULL && o.audio_srtp.suite == NULL && o.video_srtp.recv_key == NULL);
    o.remote_addr = "127.0.0.1:9";
    o.video_remote_addr = "127.0.0.1:9";

    keys(&o.audio_srtp, "AES_CM_128_HMAC_SHA1_81", KEY_A, KEY_B);
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id),
            "opts.audio_srtp.suite: \"AES_CM_128_HMAC_SHA1_81\" is not an SRTP suite");
    keys(&o.audio_srtp, "aes_cm_128_hmac_sha1_80", KEY_A, KEY_B); /* SDP names are exact */
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id), "not an SRTP suite");
    keys(&o.audio_srtp, GCM, KEY_A, KEY_B); /* 30 bytes under a 28-byte suite */
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id),
            "opts.audio_srtp.send_key: not base64 of 28 bytes");
    keys(&o.audio_srtp, CM80, KEY_A, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx"); /* cut short */
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id),
            "opts.audio_srtp.recv_key: not base64 of 30 bytes");
    keys(&o.audio_srtp, CM80, KEY_A, "!" KEY_WRONG);
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id), "recv_key");
    keys(&o.audio_srtp, CM80, KEY_A, NULL);
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id), "opts.audio_srtp.recv_key is NULL");
    keys(&o.audio_srtp, NULL, KEY_A, KEY_B);
    refused(rkm_connect_with(video, "r", "p", &o, id, sizeof id), "opts.audio_srtp.suite is NULL");
    keys(&o.audio_srtp, NULL, NULL, NULL);
    keys(&o.video_srtp, GCM, GCM_A, "inline:" GCM_B);
    o.video_remote_addr = NULL;
    refused(rkm_connect_with(voice, "r", "p", &o, id, sizeof id),
            "opts.video_srtp given to a voice backend");
    /* Nothing was opened by any of the refused calls. */
    CHECK(rkm_session_count(voice) == 0 && rkm_session_count(video) == 0);

    /* NULL options: the configured addresses (none here), plain RTP. */
    refused(rkm_connect_with(voice, "r", "p", NULL, id, sizeof id), "remote");
    /* The `inline:` prefix is accepted; a voice session with audio keys opens. */
    keys(&o.video_srtp, NULL, NULL, NULL);
    keys(&o.audio_srtp, "AES_CM_128_HMAC_SHA1_32", "inline:" KEY_A, KEY_B);
    CHECK_OK(rkm_connect_with(voice, "r", "p", &o, id, sizeof id));
    CHECK(rkm_session_count(voice) == 1);
    rkm_backend_free(voice);
    rkm_backend_free(video);
}

static rkm_stats stats_of(rkm_backend *b, const char *session) {
    rkm_stats st;
    CHECK_OK(rkm_session_stats(b, session, &st));
    return st;
}

int main(void) {
    printf("roomkit-media %s: SRTP keys from C\n", rkm_version());
    bad_arguments();

    uint8_t *pics[PICTURES];
    size_t lens[PICTURES];
    for (int i = 0; i < PICTURES; i++) {
        pics[i] = h264_picture(i == 0, i == 0 ? 20000 : 3000, (uint32_t)i + 7, &lens[i]);
    }

    /* Right keys: audio on AES-CM 80, video on GCM; each side sends with its own key. */
    static side sa, sb;
    pthread_mutex_init(&sa.lock, NULL);
    pthread_mutex_init(&sb.lock, NULL);
    rkm_backend *a = video_backend(&sa);
    rkm_backend *b = video_backend(&sb);
    rkm_connect_options oa, ob;
    rkm_connect_options_init(&oa);
    rkm_connect_options_init(&ob);
    keys(&oa.audio_srtp, CM80, KEY_A, KEY_B);
    keys(&oa.video_srtp, GCM, GCM_A, GCM_B);
    keys(&ob.audio_srtp, CM80, KEY_B, KEY_A);
    keys(&ob.video_srtp, GCM, "inline:" GCM_B, GCM_A);
    connect_keyed(a, &sa, oa, b, &sb, ob);
    pthread_mutex_lock(&sb.lock);
    CHECK(strcmp(sb.audio_srtp, CM80) == 0 && strcmp(sb.video_srtp, GCM) == 0);
    pthread_mutex_unlock(&sb.lock);
    send_media(a, sa.session, pics, lens);
    CHECK(wait_for(&sb.frames, PICTURES, 5000));
    CHECK(wait_for(&sb.audio_frames, 5, 3000));
    pthread_mutex_lock(&sb.lock);
    for (int i = 0; i < PICTURES; i++) {
        CHECK(sb.len[i] == lens[i] && memcmp(sb.data[i], pics[i], lens[i]) == 0);
    }
    pthread_mutex_unlock(&sb.lock);
    rkm_stats st = stats_of(b, sb.session);
    CHECK(st.video.srtp_auth_failed == 0 && st.audio.srtp_auth_failed == 0);
    /* (srtp_replayed may count: on a slow run, a packet NACKed and re-sent without RTX may
     * arrive twice, and the second copy is a replay.) */
    rkm_backend_free(a);
    rkm_backend_free(b);

    /* A wrong key at the receiver: every packet fails authentication, nothing is delivered. */
    static side wa, wb;
    pthread_mutex_init(&wa.lock, NULL);
    pthread_mutex_init(&wb.lock, NULL);
    a = video_backend(&wa);
    b = video_backend(&wb);
    keys(&ob.audio_srtp, CM80, KEY_B, KEY_WRONG);
    keys(&ob.video_srtp, CM80, KEY_B, KEY_WRONG);
    keys(&oa.video_srtp, CM80, KEY_A, KEY_B);
    connect_keyed(a, &wa, oa, b, &wb, ob);
    send_media(a, wa.session, pics, lens);
    /* Wait (bounded) until b has seen every video packet a sent, as authentication failures. */
    rkm_stats sent = stats_of(a, wa.session);
    CHECK(sent.video.packets_sent >= PICTURES);
    double deadline = now_ms() + (double)scaled_ms(3000);
    do {
        st = stats_of(b, wb.session);
        sleep_ms(5);
    } while ((st.video.srtp_auth_failed < sent.video.packets_sent ||
              st.audio.srtp_auth_failed < 5) &&
             now_ms() < deadline);
    CHECK(st.video.srtp_auth_failed > 0);
    CHECK(st.audio.srtp_auth_failed > 0);
    CHECK(st.video.packets_received == 0 && st.audio.packets_received == 0);
    CHECK(atomic_load(&wb.frames) == 0 && atomic_load(&wb.audio_frames) == 0);
    rkm_backend_free(a);
    rkm_backend_free(b);

    for (int i = 0; i < PICTURES; i++) {
        free(pics[i]);
        free(sb.data[i]);
    }
    pthread_mutex_destroy(&sa.lock);
    pthread_mutex_destroy(&sb.lock);
    pthread_mutex_destroy(&wa.lock);
    pthread_mutex_destroy(&wb.lock);
    printf("ok: %d pictures bit-exact over SRTP (audio %s, video %s); wrong key: %llu video "
           "packets failed authentication, 0 frames\n",
           PICTURES, CM80, GCM, (unsigned long long)st.video.srtp_auth_failed);
    return 0;
}
