/* Two RTP video backends in one C program, on loopback: pictures sent by one arrive bit-exact at
 * the other with their keyframe flags, sequence numbers and timestamps; audio, DTMF and a
 * keyframe request travel too; every callback sees the right session; stats add up. */
#include "common.h"

#define PICTURES 10

typedef struct {
    pthread_mutex_t lock;
    atomic_int frames;
    uint8_t *data[PICTURES];
    size_t len[PICTURES];
    int keyframe[PICTURES];
    uint64_t sequence[PICTURES];
    double timestamp_ms[PICTURES];
    char codec[8];
    char session[RKM_SESSION_ID_LEN];
    atomic_int audio_frames;
    atomic_int audio_bad;
    atomic_int dtmf;
    char dtmf_digit;
    atomic_int keyframe_requests;
    atomic_int ready;
    atomic_int video_ready;
    atomic_int disconnected;
} side;

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    side *s = ud;
    pthread_mutex_lock(&s->lock);
    int i = atomic_load(&s->frames);
    if (i < PICTURES) {
        s->data[i] = malloc(f->len);
        memcpy(s->data[i], f->data, f->len);
        s->len[i] = f->len;
        s->keyframe[i] = f->keyframe;
        s->sequence[i] = f->sequence;
        s->timestamp_ms[i] = f->timestamp_ms;
        snprintf(s->codec, sizeof s->codec, "%s", f->codec);
        if (strcmp(session_id, s->session) != 0) {
            s->sequence[i] = UINT64_MAX; /* flags a frame delivered for the wrong session */
        }
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->frames, 1);
}

static void on_audio(void *ud, const char *session_id, const rkm_audio_frame *f) {
    side *s = ud;
    if (strcmp(session_id, s->session) != 0 || f->samples != 160 || f->sample_rate != 8000 ||
        f->channels != 1 || f->pcm == NULL || f->payload_type != 0 || f->payload_len != 160 ||
        f->payload == NULL) {
        atomic_fetch_add(&s->audio_bad, 1);
    }
    atomic_fetch_add(&s->audio_frames, 1);
}

static void on_dtmf(void *ud, const char *session_id, char digit, uint32_t duration_ms) {
    side *s = ud;
    (void)session_id;
    (void)duration_ms;
    s->dtmf_digit = digit;
    atomic_fetch_add(&s->dtmf, 1);
}

static void on_keyframe(void *ud, const char *session_id, rkm_keyframe_kind kind) {
    side *s = ud;
    if (kind == RKM_KEYFRAME_PLI && strcmp(session_id, s->session) == 0) {
        atomic_fetch_add(&s->keyframe_requests, 1);
    }
}

static void on_ready(void *ud, const rkm_session_info *info) {
    side *s = ud;
    CHECK(strlen(info->session_id) == RKM_SESSION_ID_LEN - 1);
    CHECK(info->has_video && info->video_local_addr != NULL);
    atomic_fetch_add(&s->ready, 1);
}

static void on_video_ready(void *ud, const rkm_session_info *info) {
    side *s = ud;
    CHECK(info->room_id != NULL && info->participant_id != NULL);
    atomic_fetch_add(&s->video_ready, 1);
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    side *s = ud;
    (void)info;
    atomic_fetch_add(&s->disconnected, 1);
}

static void register_all(rkm_backend *b, side *s) {
    CHECK_OK(rkm_on_video_received(b, on_video, s));
    CHECK_OK(rkm_on_audio_received(b, on_audio, s));
    CHECK_OK(rkm_on_dtmf_received(b, on_dtmf, s));
    CHECK_OK(rkm_on_keyframe_requested(b, on_keyframe, s));
    CHECK_OK(rkm_on_session_ready(b, on_ready, s));
    CHECK_OK(rkm_on_video_session_ready(b, on_video_ready, s));
    CHECK_OK(rkm_on_client_disconnected(b, on_disconnected, s));
}

int main(void) {
    printf("roomkit-media %s: RTP video loopback\n", rkm_version());
    static side sa, sb;
    pthread_mutex_init(&sa.lock, NULL);
    pthread_mutex_init(&sb.lock, NULL);

    rkm_rtp_config cfg = loopback_config();
    rkm_backend *a = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *b = rkm_rtp_video_backend_new(&cfg);
    CHECK(a != NULL && b != NULL);
    register_all(a, &sa);
    register_all(b, &sb);

    connect_pair(a, b, sa.session, sb.session);
    CHECK(wait_for(&sa.ready, 1, 2000) && wait_for(&sb.ready, 1, 2000));
    CHECK(wait_for(&sa.video_ready, 1, 2000) && wait_for(&sb.video_ready, 1, 2000));
    CHECK(rkm_session_count(a) == 1 && rkm_session_count(b) == 1);

    /* Ten pictures, key at 0 and 6, with the caller's timestamps (30 fps from t = 1000 ms). */
    uint8_t *sent[PICTURES];
    size_t sent_len[PICTURES];
    for (int i = 0; i < PICTURES; i++) {
        int key = i == 0 || i == 6;
        sent[i] = h264_picture(key, key ? 30000 : 3000, (uint32_t)i, &sent_len[i]);
        CHECK_OK(rkm_send_video_chunk(a, sa.session, sent[i], sent_len[i],
                                      1000.0 + i * 100.0 / 3.0, key));
        sleep_ms(scaled_ms(5));
    }
    CHECK(wait_for(&sb.frames, PICTURES, 5000));
    CHECK(strcmp(sb.codec, "h264") == 0);
    for (int i = 0; i < PICTURES; i++) {
        int key = i == 0 || i == 6;
        CHECK(sb.len[i] == sent_len[i]);
        CHECK(memcmp(sb.data[i], sent[i], sent_len[i]) == 0);
        CHECK(sb.keyframe[i] == key);
        CHECK(sb.sequence[i] == (uint64_t)i);
        double want = i * 100.0 / 3.0;
        CHECK(sb.timestamp_ms[i] > want - 0.05 && sb.timestamp_ms[i] < want + 0.05);
    }

    /* 100 ms of audio (five 20 ms packets), a DTMF digit and a keyframe request. */
    int16_t pcm[800];
    for (int i = 0; i < 800; i++) {
        pcm[i] = (int16_t)((i % 40) * 400 - 8000);
    }
    CHECK_OK(rkm_send_audio(a, sa.session, pcm, 800));
    CHECK(wait_for(&sb.audio_frames, 5, 3000));
    CHECK(atomic_load(&sb.audio_bad) == 0);
    CHECK_OK(rkm_send_dtmf(a, sa.session, '7', 100));
    CHECK(wait_for(&sb.dtmf, 1, 3000));
    CHECK(sb.dtmf_digit == '7');
    CHECK_OK(rkm_request_keyframe(b, sb.session));
    CHECK(wait_for(&sa.keyframe_requests, 1, 3000));

    /* The receive thread publishes its counters right after it acts, which can be a moment
     * after the peer has already seen the PLI: poll for it, bounded. A slow run (valgrind) may
     * add PLIs of its own, so at least one. */
    rkm_stats st, sta;
    double deadline = now_ms() + (double)scaled_ms(2000);
    for (;;) {
        CHECK_OK(rkm_session_stats(b, sb.session, &st));
        CHECK_OK(rkm_session_stats(a, sa.session, &sta));
        if ((st.video.pli_sent > 0 && sta.video.pli_received > 0) || now_ms() > deadline) {
            break;
        }
        sleep_ms(2);
    }
    CHECK(st.has_video);
    CHECK(st.video.frames == PICTURES);
    CHECK(st.video.keyframes == 2);
    CHECK(st.video.lost == 0);
    CHECK(st.audio.dtmf_received == 1);
    CHECK(st.video.pli_sent >= 1);
    CHECK(sta.video.packets_sent == st.video.packets_received);
    CHECK(sta.video.pli_received >= 1);

    /* Metrics: ask for the size, then render; the sums include this session's counters. */
    size_t need = 0;
    CHECK(rkm_metrics_text(a, "c-a", NULL, 0, &need) == RKM_ERR_BUFFER_TOO_SMALL);
    size_t cap = need + 4096;
    char *text = malloc(cap);
    CHECK(text != NULL);
    CHECK_OK(rkm_metrics_text(a, "c-a", text, cap, &need));
    CHECK(need == strlen(text) + 1);
    CHECK(strstr(text, "\nrkm_sessions{instance=\"c-a\"} 1\n") != NULL);
    const char *key = "\nrkm_rtp_packets_sent_total{instance=\"c-a\",media=\"video\"} ";
    const char *at = strstr(text, key);
    CHECK(at != NULL);
    CHECK(strtoull(at + strlen(key), NULL, 10) >= sta.video.packets_sent);
    free(text);

    CHECK_OK(rkm_disconnect(a, sa.session));
    /* a's RTCP BYE on both streams ends b's session by itself, maybe before this call. */
    rkm_status st_b = rkm_disconnect(b, sb.session);
    CHECK(st_b == RKM_OK || st_b == RKM_ERR_NOT_FOUND);
    CHECK(wait_for(&sa.disconnected, 1, 2000) && wait_for(&sb.disconnected, 1, 2000));
    CHECK(rkm_session_count(a) == 0 && rkm_session_count(b) == 0);
    CHECK(rkm_disconnect(a, sa.session) == RKM_ERR_NOT_FOUND);
    rkm_backend_free(a);
    rkm_backend_free(b);

    for (int i = 0; i < PICTURES; i++) {
        free(sent[i]);
        free(sb.data[i]);
    }
    pthread_mutex_destroy(&sa.lock);
    pthread_mutex_destroy(&sb.lock);
    printf("ok: %d pictures bit-exact, audio, DTMF, PLI, stats, metrics\n", PICTURES);
    return 0;
}
