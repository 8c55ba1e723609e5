/* Every entry point given NULL or invalid arguments returns an error code (or NULL / 0) and
 * leaves a message naming itself in rkm_last_error(); nothing crashes. */
#include "common.h"

/* Runs `call`, expects `want`, and expects rkm_last_error() to name `fn`. */
#define EXPECT_ERR(call, want, fn)                                                           \
    do {                                                                                     \
        rkm_status got_ = (call);                                                            \
        if (got_ != (want)) {                                                                \
            fprintf(stderr, "%s:%d: %s returned %d, wanted %d (%s)\n", __FILE__, __LINE__,   \
                    #call, (int)got_, (int)(want), rkm_last_error());                        \
            exit(1);                                                                         \
        }                                                                                    \
        expect_message(fn, __LINE__);                                                        \
        checks++;                                                                            \
    } while (0)

static int checks = 0;

static void expect_message(const char *fn, int line) {
    const char *msg = rkm_last_error();
    if (msg == NULL || msg[0] == '\0' || strstr(msg, fn) == NULL) {
        fprintf(stderr, "bad_args.c:%d: rkm_last_error() = \"%s\" does not name %s\n", line,
                msg ? msg : "(null)", fn);
        exit(1);
    }
}

static void noop_video(void *u, const char *s, const rkm_video_frame *f) {
    (void)u;
    (void)s;
    (void)f;
}

int main(void) {
    const char *unknown = "00000000-0000-4000-8000-000000000000";
    const char *not_utf8 = "\xff\xfe";
    CHECK(strlen(rkm_last_error()) == 0);
    CHECK(rkm_version() != NULL && rkm_version()[0] != '\0');

    /* Config and construction. */
    rkm_rtp_config_init(NULL);
    expect_message("rkm_rtp_config_init", __LINE__);
    CHECK(rkm_rtp_video_backend_new(NULL) == NULL);
    expect_message("rkm_rtp_video_backend_new", __LINE__);
    CHECK(rkm_rtp_voice_backend_new(NULL) == NULL);
    expect_message("rkm_rtp_voice_backend_new", __LINE__);
    rkm_rtp_config cfg = loopback_config();
    cfg.delivery = 42;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "delivery") != NULL);
    cfg = loopback_config();
    cfg.local_addr = "not-an-address";
    CHECK(rkm_rtp_voice_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "local_addr") != NULL);
    cfg = loopback_config();
    cfg.video_codec = not_utf8;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "UTF-8") != NULL);
    cfg = loopback_config();
    cfg.callback_threads = 0;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    cfg = loopback_config();
    cfg.mtu = 10;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    cfg = loopback_config();
    cfg.io_threads = 5000;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "io_threads") != NULL);
    cfg = loopback_config();
    cfg.dtmf_payload_type = 300;
    CHECK(rkm_rtp_video_backend_new(&cfg) == NULL);
    rkm_backend_free(NULL); /* a no-op */

    cfg = loopback_config();
    rkm_backend *v = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *a = rkm_rtp_voice_backend_new(&cfg);
    CHECK(v != NULL && a != NULL);
    char id[RKM_SESSION_ID_LEN];
    char small[8];

    /* rkm_connect */
    EXPECT_ERR(rkm_connect(NULL, "r", "p", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "rkm_connect");
    EXPECT_ERR(rkm_connect(v, NULL, "p", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "room_id");
    EXPECT_ERR(rkm_connect(v, "r", NULL, "127.0.0.1:9", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "participant_id");
    EXPECT_ERR(rkm_connect(v, not_utf8, "p", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(rkm_connect(v, "r", "p", "127.0.0.1:9", "127.0.0.1:9", NULL, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "session_id_out");
    EXPECT_ERR(rkm_connect(v, "r", "p", "127.0.0.1:9", "127.0.0.1:9", small, sizeof small),
               RKM_ERR_BUFFER_TOO_SMALL, "session_id_out");
    EXPECT_ERR(rkm_connect(v, "r", "p", "nonsense", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "remote_addr");
    /* No video address in the config nor in the call: the message names the missing setting. */
    EXPECT_ERR(rkm_connect(v, "r", "p", "127.0.0.1:9", NULL, id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "video_remote_addr");
    EXPECT_ERR(rkm_connect(a, "r", "p", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id),
               RKM_ERR_INVALID_ARGUMENT, "voice backend");
    CHECK(rkm_session_count(v) == 0 && rkm_session_count(a) == 0); /* nothing half-made */

    /* Session calls with a NULL backend, a NULL id, a malformed id, an unknown id. */
    CHECK_OK(rkm_connect(v, "r", "p", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id));
    uint8_t pic[] = {0, 0, 0, 1, 0x65, 1, 2, 3};
    int16_t pcm[160] = {0};
    rkm_stats st;
    rkm_session_addrs ad;

    EXPECT_ERR(rkm_disconnect(NULL, id), RKM_ERR_INVALID_ARGUMENT, "rkm_disconnect");
    EXPECT_ERR(rkm_disconnect(v, NULL), RKM_ERR_INVALID_ARGUMENT, "session_id");
    EXPECT_ERR(rkm_disconnect(v, "nope"), RKM_ERR_INVALID_ARGUMENT, "session_id");
    EXPECT_ERR(rkm_disconnect(v, unknown), RKM_ERR_NOT_FOUND, "rkm_disconnect");

    EXPECT_ERR(rkm_update_remote(NULL, id, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_update_remote");
    EXPECT_ERR(rkm_update_remote(v, id, "bad", NULL), RKM_ERR_INVALID_ARGUMENT, "remote_addr");
    EXPECT_ERR(rkm_update_remote(v, unknown, NULL, NULL), RKM_ERR_NOT_FOUND,
               "rkm_update_remote");

    EXPECT_ERR(rkm_send_video(NULL, id, pic, sizeof pic), RKM_ERR_INVALID_ARGUMENT,
               "rkm_send_video");
    EXPECT_ERR(rkm_send_video(v, NULL, pic, sizeof pic), RKM_ERR_INVALID_ARGUMENT,
               "session_id");
    EXPECT_ERR(rkm_send_video(v, id, NULL, 8), RKM_ERR_INVALID_ARGUMENT, "data");
    EXPECT_ERR(rkm_send_video(v, unknown, pic, sizeof pic), RKM_ERR_NOT_FOUND,
               "rkm_send_video");
    EXPECT_ERR(rkm_send_video(a, id, pic, sizeof pic), RKM_ERR_UNSUPPORTED, "voice");

    EXPECT_ERR(rkm_send_video_chunk(NULL, id, pic, sizeof pic, 0.0, true),
               RKM_ERR_INVALID_ARGUMENT, "rkm_send_video_chunk");
    EXPECT_ERR(rkm_send_video_chunk(v, id, NULL, 1, 0.0, true), RKM_ERR_INVALID_ARGUMENT,
               "data");
    EXPECT_ERR(rkm_send_video_chunk(v, id, pic, sizeof pic, -1.0, true),
               RKM_ERR_INVALID_ARGUMENT, "timestamp_ms");
    EXPECT_ERR(rkm_send_video_chunk(v, id, pic, sizeof pic, 0.0 / 0.0, true),
               RKM_ERR_INVALID_ARGUMENT, "timestamp_ms");
    EXPECT_ERR(rkm_send_video_chunk(v, unknown, pic, sizeof pic, 0.0, true),
               RKM_ERR_NOT_FOUND, "rkm_send_video_chunk");
    EXPECT_ERR(rkm_send_video_chunk(a, id, pic, sizeof pic, 0.0, true), RKM_ERR_UNSUPPORTED,
               "voice");

    EXPECT_ERR(rkm_send_audio(NULL, id, pcm, 160), RKM_ERR_INVALID_ARGUMENT, "rkm_send_audio");
    EXPECT_ERR(rkm_send_audio(v, id, NULL, 160), RKM_ERR_INVALID_ARGUMENT, "pcm");
    EXPECT_ERR(rkm_send_audio(v, "", pcm, 160), RKM_ERR_INVALID_ARGUMENT, "session_id");
    EXPECT_ERR(rkm_send_audio(v, unknown, pcm, 160), RKM_ERR_NOT_FOUND, "rkm_send_audio");
    EXPECT_ERR(rkm_send_audio_at(NULL, id, pcm, 160, 8000), RKM_ERR_INVALID_ARGUMENT,
               "rkm_send_audio_at");
    EXPECT_ERR(rkm_send_audio_at(v, id, NULL, 160, 8000), RKM_ERR_INVALID_ARGUMENT, "pcm");
    EXPECT_ERR(rkm_send_audio_at(v, unknown, pcm, 160, 8000), RKM_ERR_NOT_FOUND,
               "rkm_send_audio_at");

    EXPECT_ERR(rkm_send_dtmf(NULL, id, '1', 100), RKM_ERR_INVALID_ARGUMENT, "rkm_send_dtmf");
    EXPECT_ERR(rkm_send_dtmf(v, id, 'x', 100), RKM_ERR_INVALID_ARGUMENT, "DTMF");
    EXPECT_ERR(rkm_send_dtmf(v, unknown, '1', 100), RKM_ERR_NOT_FOUND, "rkm_send_dtmf");

    EXPECT_ERR(rkm_request_keyframe(NULL, id), RKM_ERR_INVALID_ARGUMENT,
               "rkm_request_keyframe");
    EXPECT_ERR(rkm_request_keyframe(v, unknown), RKM_ERR_NOT_FOUND, "rkm_request_keyframe");
    EXPECT_ERR(rkm_request_keyframe(a, id), RKM_ERR_UNSUPPORTED, "voice");

    CHECK(rkm_session_count(NULL) == 0);
    expect_message("rkm_session_count", __LINE__);

    EXPECT_ERR(rkm_session_stats(NULL, id, &st), RKM_ERR_INVALID_ARGUMENT, "rkm_session_stats");
    EXPECT_ERR(rkm_session_stats(v, id, NULL), RKM_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(rkm_session_stats(v, unknown, &st), RKM_ERR_NOT_FOUND, "rkm_session_stats");
    EXPECT_ERR(rkm_session_addresses(NULL, id, &ad), RKM_ERR_INVALID_ARGUMENT,
               "rkm_session_addresses");
    EXPECT_ERR(rkm_session_addresses(v, id, NULL), RKM_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(rkm_session_addresses(v, unknown, &ad), RKM_ERR_NOT_FOUND,
               "rkm_session_addresses");

    /* Callback registration: NULL backend; video callbacks on a voice backend. */
    EXPECT_ERR(rkm_on_video_received(NULL, noop_video, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_video_received");
    EXPECT_ERR(rkm_on_video_received(a, noop_video, NULL), RKM_ERR_UNSUPPORTED, "voice");
    EXPECT_ERR(rkm_on_video_session_ready(a, NULL, NULL), RKM_ERR_UNSUPPORTED, "voice");
    EXPECT_ERR(rkm_on_keyframe_requested(a, NULL, NULL), RKM_ERR_UNSUPPORTED, "voice");
    EXPECT_ERR(rkm_on_target_bitrate(a, NULL, NULL), RKM_ERR_UNSUPPORTED, "voice");
    EXPECT_ERR(rkm_on_target_bitrate(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_target_bitrate");
    EXPECT_ERR(rkm_on_audio_received(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_audio_received");
    EXPECT_ERR(rkm_on_dtmf_received(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_dtmf_received");
    EXPECT_ERR(rkm_on_session_ready(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_session_ready");
    EXPECT_ERR(rkm_on_client_disconnected(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT,
               "rkm_on_client_disconnected");
    /* A NULL callback unregisters: allowed. */
    CHECK_OK(rkm_on_video_received(v, noop_video, NULL));
    CHECK_OK(rkm_on_video_received(v, NULL, NULL));

    /* SIP entry points. */
    rkm_sip_config_init(NULL);
    expect_message("rkm_sip_config_init", __LINE__);
    CHECK(rkm_sip_video_backend_new(NULL) == NULL);
    expect_message("rkm_sip_video_backend_new", __LINE__);
    CHECK(rkm_sip_voice_backend_new(NULL) == NULL);
    expect_message("rkm_sip_voice_backend_new", __LINE__);
    rkm_sip_config sc;
    rkm_sip_config_init(&sc);
    sc.supported_video_codecs = "H265";
    CHECK(rkm_sip_video_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "supported_video_codecs") != NULL);
    rkm_sip_config_init(&sc);
    sc.local_rtp_ip = "not-an-ip";
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "local_rtp_ip") != NULL);
    rkm_sip_config_init(&sc);
    sc.auth_user = "alice"; /* and no password */
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "auth_password") != NULL);
    rkm_sip_config_init(&sc);
    sc.rtp_port_start = 20000;
    sc.rtp_port_end = 10000;
    CHECK(rkm_sip_video_backend_new(&sc) == NULL);
    /* SRTP suites: NULL is the default list; an unknown or repeated name is refused, naming the
     * field and the name. */
    rkm_sip_config_init(&sc);
    CHECK(sc.srtp_suites == NULL);
    sc.srtp_suites = "AES_CM_128_HMAC_SHA1_80,AES_256_CM_HMAC_SHA1_80";
    CHECK(rkm_sip_video_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "srtp_suites") != NULL);
    CHECK(strstr(rkm_last_error(), "AES_256_CM_HMAC_SHA1_80") != NULL);
    sc.srtp_suites = "AEAD_AES_128_GCM,AEAD_AES_128_GCM";
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "twice") != NULL);
    /* TCP/TLS settings: a key without its certificate, a TLS listener without either, a bad
     * address are refused at creation; certificate files that do not exist, at start. */
    rkm_sip_config_init(&sc);
    CHECK(sc.tls_verify && sc.local_sip_tls_addr == NULL && sc.tls_cert == NULL);
    CHECK(sc.sip_keepalive_ms == 120000);
    sc.tls_key = "/nonexistent/key.pem";
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "tls_key") != NULL);
    rkm_sip_config_init(&sc);
    sc.local_sip_tls_addr = "127.0.0.1:0";
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "local_sip_tls_addr") != NULL);
    rkm_sip_config_init(&sc);
    sc.local_sip_tcp_addr = "nowhere";
    CHECK(rkm_sip_voice_backend_new(&sc) == NULL);
    CHECK(strstr(rkm_last_error(), "local_sip_tcp_addr") != NULL);
    rkm_sip_config_init(&sc);
    sc.local_sip_addr = "127.0.0.1:0";
    sc.local_rtp_ip = "127.0.0.1";
    sc.local_sip_tls_addr = "127.0.0.1:0";
    sc.tls_cert = "/nonexistent/cert.pem";
    sc.tls_key = "/nonexistent/key.pem";
    rkm_backend *t = rkm_sip_voice_backend_new(&sc);
    CHECK(t != NULL);
    EXPECT_ERR(rkm_backend_start(t), RKM_ERR_IO, "TLS");
    rkm_backend_free(t);
    rkm_sip_config_init(&sc);
    sc.local_sip_addr = "127.0.0.1:0";
    sc.local_rtp_ip = "127.0.0.1";
    rkm_backend *s = rkm_sip_video_backend_new(&sc);
    CHECK(s != NULL);
    char addr[RKM_ADDR_LEN];
    /* Metrics: pointers checked, the size asked for, a short buffer refused (before start). */
    size_t need = 0;
    EXPECT_ERR(rkm_metrics_text(NULL, NULL, small, sizeof small, &need),
               RKM_ERR_INVALID_ARGUMENT, "rkm_metrics_text");
    EXPECT_ERR(rkm_metrics_text(s, not_utf8, small, sizeof small, &need),
               RKM_ERR_INVALID_ARGUMENT, "instance");
    EXPECT_ERR(rkm_metrics_text(s, NULL, NULL, 64, NULL), RKM_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(rkm_metrics_text(s, NULL, NULL, 0, &need), RKM_ERR_BUFFER_TOO_SMALL,
               "rkm_metrics_text");
    CHECK(need > 1000);
    EXPECT_ERR(rkm_metrics_text(s, NULL, small, sizeof small, NULL), RKM_ERR_BUFFER_TOO_SMALL,
               "rkm_metrics_text");
    EXPECT_ERR(rkm_backend_start(NULL), RKM_ERR_INVALID_ARGUMENT, "rkm_backend_start");
    EXPECT_ERR(rkm_sip_local_addr(NULL, addr, sizeof addr), RKM_ERR_INVALID_ARGUMENT,
               "rkm_sip_local_addr");
    EXPECT_ERR(rkm_sip_local_addr(s, addr, sizeof addr), RKM_ERR_STATE, "not started");
    EXPECT_ERR(rkm_send_audio(s, id, pcm, 160), RKM_ERR_STATE, "not started");
    EXPECT_ERR(rkm_on_call(NULL, NULL, NULL), RKM_ERR_INVALID_ARGUMENT, "rkm_on_call");
    EXPECT_ERR(rkm_on_call(v, NULL, NULL), RKM_ERR_UNSUPPORTED, "SIP");
    CHECK_OK(rkm_backend_start(v)); /* RTP backends run from creation: nothing to do */
    CHECK_OK(rkm_backend_start(s));
    EXPECT_ERR(rkm_backend_start(s), RKM_ERR_STATE, "already started");
    EXPECT_ERR(rkm_sip_local_addr(s, NULL, 64), RKM_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(rkm_sip_local_addr(s, addr, 4), RKM_ERR_BUFFER_TOO_SMALL, "rkm_sip_local_addr");
    EXPECT_ERR(rkm_sip_local_addr(v, addr, sizeof addr), RKM_ERR_UNSUPPORTED, "SIP");
    EXPECT_ERR(rkm_connect(s, "r", "p", NULL, NULL, id, sizeof id), RKM_ERR_UNSUPPORTED,
               "rkm_connect");
    EXPECT_ERR(rkm_disconnect(s, unknown), RKM_ERR_NOT_FOUND, "rkm_disconnect");
    /* Every session operation exists on every backend: an unknown session is the error. */
    EXPECT_ERR(rkm_update_remote(s, unknown, "127.0.0.1:9", NULL), RKM_ERR_NOT_FOUND,
               "rkm_update_remote");
    CHECK(rkm_session_count(s) == 0);
    rkm_backend_free(s);

    /* Still serving after all that. */
    CHECK(rkm_session_count(v) == 1);
    CHECK_OK(rkm_session_stats(v, id, &st));
    CHECK_OK(rkm_send_video(v, id, pic, sizeof pic));
    CHECK_OK(rkm_disconnect(v, id));
    rkm_backend_free(v);
    rkm_backend_free(a);
    printf("ok: %d invalid calls refused with a message\n", checks);
    return 0;
}
