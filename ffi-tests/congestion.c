/* Congestion control through the C API: off by default in rkm_resilience, bad bounds refused,
 * and with it on at both ends of an RTP video pair on loopback, transport-cc feedback flows
 * (the cc_* counters of rkm_stream_stats), the estimate shows in the sender's stats, and
 * rkm_on_target_bitrate reports its moves on the sender's session with a known reason. */
#include "common.h"

typedef struct {
    char session[RKM_SESSION_ID_LEN];
    atomic_int frames;
    atomic_int targets;
    atomic_int wrong_session;
    _Atomic uint64_t last_bps;
} side;

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    side *s = ud;
    (void)session_id;
    (void)f;
    atomic_fetch_add(&s->frames, 1);
}

static void on_target(void *ud, const char *session_id, uint64_t bps, rkm_rate_reason reason) {
    side *s = ud;
    if (strcmp(session_id, s->session) != 0 || reason > RKM_RATE_PROBE) {
        atomic_fetch_add(&s->wrong_session, 1);
    }
    atomic_store(&s->last_bps, bps);
    atomic_fetch_add(&s->targets, 1);
}

int main(void) {
    printf("roomkit-media %s: congestion control\n", rkm_version());
    rkm_rtp_config cfg = loopback_config();
    CHECK(!cfg.resilience.congestion);
    CHECK(cfg.resilience.congestion_min_kbps == 50 && cfg.resilience.congestion_start_kbps == 300);
    CHECK(cfg.resilience.congestion_max_kbps == 10000);
    cfg.resilience.congestion_min_kbps = 0;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "congestion_min_kbps") != NULL);

    static side sa, sb;
    cfg = loopback_config();
    cfg.resilience.congestion = true;
    cfg.resilience.congestion_start_kbps = 2000;
    rkm_backend *a = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *b = rkm_rtp_video_backend_new(&cfg);
    CHECK(a != NULL && b != NULL);
    CHECK_OK(rkm_on_video_received(b, on_video, &sb));
    CHECK_OK(rkm_on_target_bitrate(a, on_target, &sa));
    connect_pair(a, b, sa.session, sb.session);

    /* 2 s of pictures at 30 fps, about 0.8 Mbit/s. */
    for (int i = 0; i < 60; i++) {
        size_t len;
        uint8_t *p = h264_picture(i == 0, i == 0 ? 6000 : 3000, (uint32_t)i, &len);
        CHECK_OK(rkm_send_video(a, sa.session, p, len));
        free(p);
        sleep_ms(33);
    }
    CHECK(wait_for(&sb.frames, 30, 5000));
    sleep_ms(scaled_ms(300));
    rkm_stats st, sbst;
    CHECK_OK(rkm_session_stats(a, sa.session, &st));
    CHECK_OK(rkm_session_stats(b, sb.session, &sbst));
    printf("feedback %llu sent, %llu used; estimate %llu bit/s; %d target calls\n",
           (unsigned long long)sbst.video.cc_feedback_sent,
           (unsigned long long)st.video.cc_feedback_received,
           (unsigned long long)st.video.cc_target_bps, atomic_load(&sa.targets));
    /* Floors for a slow run (valgrind): feedback is due every 50 ms. */
    CHECK(sbst.video.cc_feedback_sent >= 5);
    CHECK(st.video.cc_feedback_received >= 5);
    CHECK(st.video.cc_target_bps >= 50000 && st.video.cc_pacer_rate_bps > 0);
    CHECK(atomic_load(&sa.wrong_session) == 0);
    CHECK(rkm_on_target_bitrate(a, NULL, NULL) == RKM_OK);

    rkm_backend_free(a);
    rkm_backend_free(b);
    printf("ok: congestion control settings, feedback, estimate and target callback\n");
    return 0;
}
