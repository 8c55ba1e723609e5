/* The resilience settings and what they report, through the C API: the defaults of
 * rkm_resilience, bad values refused, a session whose peer said RTCP BYE or went silent ends by
 * itself with the right end_reason, RTT and loss-recovery counters in the stats, and the
 * `concealed` flag of audio frames agreeing with the audio_concealed counter. */
#include "common.h"

typedef struct {
    char session[RKM_SESSION_ID_LEN];
    atomic_int frames;
    atomic_int audio_frames;
    atomic_int audio_concealed;
    atomic_int disconnected;
    atomic_int end_reason;
} side;

static void on_video(void *ud, const char *session_id, const rkm_video_frame *f) {
    side *s = ud;
    (void)session_id;
    (void)f;
    atomic_fetch_add(&s->frames, 1);
}

static void on_audio(void *ud, const char *session_id, const rkm_audio_frame *f) {
    side *s = ud;
    (void)session_id;
    if (f->concealed) {
        atomic_fetch_add(&s->audio_concealed, 1);
    }
    atomic_fetch_add(&s->audio_frames, 1);
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    side *s = ud;
    atomic_store(&s->end_reason, (int)info->end_reason);
    atomic_fetch_add(&s->disconnected, 1);
}

static void register_all(rkm_backend *b, side *s) {
    CHECK_OK(rkm_on_video_received(b, on_video, s));
    CHECK_OK(rkm_on_audio_received(b, on_audio, s));
    CHECK_OK(rkm_on_client_disconnected(b, on_disconnected, s));
}

static void defaults_and_bad_values(void) {
    rkm_rtp_config cfg = loopback_config();
    CHECK(cfg.resilience.nack && cfg.resilience.pacing);
    CHECK(cfg.resilience.pacing_max_kbps == 0);
    CHECK(cfg.resilience.audio_jitter_ms == 0);
    CHECK(cfg.resilience.inactivity_timeout_ms == 30000);
    CHECK(cfg.resilience.close_linger_ms == 0);
    CHECK(cfg.rtx_payload_type == -1);
    CHECK(!cfg.video_fec && cfg.fec_red_payload_type == 123 && cfg.fec_ulpfec_payload_type == 122);
    CHECK(cfg.transport_cc_id == 3);
    rkm_sip_config sip;
    rkm_sip_config_init(&sip);
    CHECK(sip.video_rtx && sip.resilience.nack && sip.resilience.inactivity_timeout_ms == 30000);

    cfg.rtx_payload_type = cfg.video_payload_type; /* RTX cannot share the video's type */
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "rtx_payload_type") != NULL);
    cfg = loopback_config();
    cfg.resilience.pacing_max_kbps = 10;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "pacing_max_kbps") != NULL);
    cfg = loopback_config();
    cfg.video_fec = true;
    cfg.fec_red_payload_type = cfg.video_payload_type; /* RED needs a payload type of its own */
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "video_fec") != NULL);
    cfg = loopback_config();
    cfg.transport_cc_id = 15; /* one-byte header extension IDs end at 14 */
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "transport_cc_id") != NULL);
}

int main(void) {
    printf("roomkit-media %s: resilience settings and end reasons\n", rkm_version());
    defaults_and_bad_values();

    static side sa, sb, sc;
    rkm_rtp_config cfg = loopback_config();
    cfg.rtx_payload_type = 97;
    cfg.rtcp_interval_ms = 100;
    cfg.resilience.audio_jitter_ms = 40;
    cfg.resilience.inactivity_timeout_ms = 0;
    cfg.resilience.close_linger_ms = 0;
    cfg.resilience.pacing_max_kbps = 20000;
    rkm_backend *a = rkm_rtp_video_backend_new(&cfg);
    cfg.resilience.inactivity_timeout_ms = 400;
    rkm_backend *b = rkm_rtp_video_backend_new(&cfg);
    CHECK(a != NULL && b != NULL);
    register_all(a, &sa);
    register_all(b, &sb);
    connect_pair(a, b, sa.session, sb.session);

    /* Pictures and audio from a to b, then b's RTT from the reports. */
    int16_t pcm[160 * 10] = {0};
    for (int i = 0; i < 10; i++) {
        size_t len;
        uint8_t *p = h264_picture(i == 0, i == 0 ? 20000 : 2000, (uint32_t)i, &len);
        CHECK_OK(rkm_send_video(a, sa.session, p, len));
        free(p);
        CHECK_OK(rkm_send_audio(a, sa.session, pcm + 160 * i, 160));
        sleep_ms(scaled_ms(20));
    }
    CHECK(wait_for(&sb.frames, 10, 5000));
    CHECK(wait_for(&sb.audio_frames, 5, 5000));
    rkm_stats st;
    double deadline = now_ms() + (double)scaled_ms(3000);
    for (;;) {
        CHECK_OK(rkm_session_stats(a, sa.session, &st));
        if (st.video.rtt_ms > 0.0 || now_ms() > deadline) {
            break;
        }
        sleep_ms(10);
    }
    CHECK(st.video.rtt_ms > 0.0 && st.video.rtt_ms < 1000.0);
    CHECK(st.video.remote_fraction_lost == 0.0);
    CHECK(st.video.bye_received == 0);
    /* A slow run (valgrind) may ask for packets that were merely late: repairs then come on
     * the RTX stream, at most two copies per request. */
    rkm_stats sbst;
    CHECK_OK(rkm_session_stats(b, sb.session, &sbst));
    CHECK(st.video.retransmitted <= 2 * st.video.nack_received);
    CHECK(sbst.video.recovered <= sbst.video.nack_sent);
    CHECK(sbst.audio.audio_concealed == (uint64_t)atomic_load(&sb.audio_concealed));
    /* Every NACKed packet is either resent or refused; the jitter buffer never aims below the
     * configured depth; the last picture's pacing delay is within the longest one. */
    CHECK(st.video.retransmit_refused <= st.video.nack_received);
    CHECK(sbst.video.rtx_duplicates <= sbst.video.rtx_received);
    CHECK(sbst.audio.audio_jitter_depth_ms >= 40.0);
    CHECK(st.video.pacer_delay_ms >= 0.0);
    CHECK(st.video.pacer_delay_ms <= st.video.pacer_delay_max_ms);

    /* a hangs up: b hears RTCP BYE on both streams and ends by itself. */
    CHECK_OK(rkm_disconnect(a, sa.session));
    CHECK(wait_for(&sa.disconnected, 1, 2000));
    CHECK(atomic_load(&sa.end_reason) == RKM_END_LOCAL_HANGUP);
    CHECK(wait_for(&sb.disconnected, 1, 3000));
    CHECK(atomic_load(&sb.end_reason) == RKM_END_RTCP_BYE);
    CHECK(rkm_session_count(b) == 0);

    /* A session whose peer never sends ends after the inactivity timeout. */
    register_all(b, &sc);
    CHECK_OK(rkm_connect(b, "room-c", "carol", "127.0.0.1:9", "127.0.0.1:9", sc.session,
                         RKM_SESSION_ID_LEN));
    CHECK(wait_for(&sc.disconnected, 1, 5000));
    CHECK(atomic_load(&sc.end_reason) == RKM_END_RTP_TIMEOUT);
    CHECK(rkm_session_count(b) == 0);

    rkm_backend_free(a);
    rkm_backend_free(b);
    printf("ok: defaults, refusals, RTT, RTCP BYE and inactivity end reasons\n");
    return 0;
}
