/* Wideband audio through the C API, two RTP voice backends on loopback: Opus (payload type 111
 * named by `audio_codec`) at the default PCM rate (16 kHz), G.722 (static type 9) at the codec's
 * own rate and at 8 kHz, each carrying a tone whose frequency must come out (counted by zero
 * crossings); a passed-through format refusing `rkm_send_audio` and carrying
 * `rkm_send_audio_payload` as is; an unsupported `audio_sample_rate` refused; PCM at another rate
 * per call (`rkm_send_audio_at`) converted, an unsupported one refused. */
#include "common.h"

#include <math.h>

#define FRAMES 25
#define TONE_HZ 1000.0
#define PI 3.14159265358979323846

typedef struct {
    char session[RKM_SESSION_ID_LEN];
    atomic_int ready;
    atomic_uint ready_rate;
    atomic_int frames;
    atomic_int bad;
    atomic_uint rate;
    atomic_uint payload_len;
    atomic_int zero_crossings;
    atomic_long samples;
    int16_t last;
    uint8_t payload[8];
} side;

static void on_ready(void *ud, const rkm_session_info *info) {
    side *s = ud;
    atomic_store(&s->ready_rate, info->audio_sample_rate);
    atomic_fetch_add(&s->ready, 1);
}

static void on_audio(void *ud, const char *session_id, const rkm_audio_frame *f) {
    side *s = ud;
    if (strcmp(session_id, s->session) != 0 || f->channels != 1 || f->payload == NULL ||
        f->payload_len == 0) {
        atomic_fetch_add(&s->bad, 1);
    }
    atomic_store(&s->rate, f->sample_rate);
    atomic_store(&s->payload_len, (unsigned)f->payload_len);
    if (f->payload_len <= sizeof s->payload) {
        memcpy(s->payload, f->payload, f->payload_len);
    }
    /* Callbacks of one session run on one thread at a time: `last` needs no lock. Zero
     * crossings after the first five frames (codec and converter start-up). */
    if (atomic_load(&s->frames) >= 5) {
        int crossings = 0;
        for (size_t i = 0; i < f->samples; i++) {
            if ((s->last < 0) != (f->pcm[i] < 0)) {
                crossings++;
            }
            s->last = f->pcm[i];
        }
        atomic_fetch_add(&s->zero_crossings, crossings);
        atomic_fetch_add(&s->samples, (long)f->samples);
    } else if (f->samples > 0) {
        s->last = f->pcm[f->samples - 1];
    }
    atomic_fetch_add(&s->frames, 1);
}

/* A pair of voice backends with `cfg`, sessions aimed at each other. */
static void open_pair(rkm_rtp_config *cfg, rkm_backend **a, rkm_backend **b, side *sa,
                      side *sb) {
    *a = rkm_rtp_voice_backend_new(cfg);
    *b = rkm_rtp_voice_backend_new(cfg);
    CHECK(*a != NULL && *b != NULL);
    CHECK_OK(rkm_on_session_ready(*a, on_ready, sa));
    CHECK_OK(rkm_on_session_ready(*b, on_ready, sb));
    CHECK_OK(rkm_on_audio_received(*b, on_audio, sb));
    CHECK_OK(rkm_connect(*a, "room", "alice", "127.0.0.1:9", NULL, sa->session,
                         RKM_SESSION_ID_LEN));
    rkm_session_addrs aa, ba;
    CHECK_OK(rkm_session_addresses(*a, sa->session, &aa));
    CHECK_OK(rkm_connect(*b, "room", "bob", aa.local_addr, NULL, sb->session,
                         RKM_SESSION_ID_LEN));
    CHECK_OK(rkm_session_addresses(*b, sb->session, &ba));
    CHECK_OK(rkm_update_remote(*a, sa->session, ba.local_addr, NULL));
    CHECK(wait_for(&sa->ready, 1, 2000) && wait_for(&sb->ready, 1, 2000));
}

static void close_pair(rkm_backend *a, rkm_backend *b, side *sa, side *sb) {
    CHECK_OK(rkm_disconnect(a, sa->session));
    /* a's RTCP BYE may already have ended b's session (the peer left every stream). */
    rkm_status st = rkm_disconnect(b, sb->session);
    CHECK(st == RKM_OK || st == RKM_ERR_NOT_FOUND);
    rkm_backend_free(a);
    rkm_backend_free(b);
}

/* Sends FRAMES × 20 ms of the tone from a, paced, as PCM at `send_rate` (`rkm_send_audio_at`
 * when that is not a's rate `rate`); checks what b decoded. */
static void tone_through(const char *what, rkm_rtp_config *cfg, unsigned rate, unsigned send_rate,
                         unsigned want_rx_rate) {
    static side sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    rkm_backend *a, *b;
    open_pair(cfg, &a, &b, &sa, &sb);
    CHECK(atomic_load(&sa.ready_rate) == rate);
    CHECK(atomic_load(&sb.ready_rate) == want_rx_rate);
    size_t n = send_rate / 50;
    int16_t *pcm = malloc(n * sizeof *pcm);
    CHECK(pcm != NULL);
    size_t t = 0;
    for (int f = 0; f < FRAMES; f++) {
        for (size_t i = 0; i < n; i++, t++) {
            pcm[i] = (int16_t)(8000.0 * sin(2.0 * PI * TONE_HZ * (double)t / (double)send_rate));
        }
        if (send_rate == rate) {
            CHECK_OK(rkm_send_audio(a, sa.session, pcm, n));
        } else {
            CHECK_OK(rkm_send_audio_at(a, sa.session, pcm, n, send_rate));
        }
        sleep_ms(20);
    }
    if (send_rate != rate) {
        /* A rate the converter lacks is refused; the stream goes on. */
        CHECK(rkm_send_audio_at(a, sa.session, pcm, n, 44100) == RKM_ERR_INVALID_ARGUMENT);
        CHECK(rkm_send_audio_at(a, sa.session, NULL, n, 8000) == RKM_ERR_INVALID_ARGUMENT);
    }
    free(pcm);
    CHECK(wait_for(&sb.frames, FRAMES - 1, 3000));
    CHECK(atomic_load(&sb.bad) == 0);
    CHECK(atomic_load(&sb.rate) == want_rx_rate);
    double secs = (double)atomic_load(&sb.samples) / (double)want_rx_rate;
    double hz = (double)atomic_load(&sb.zero_crossings) / 2.0 / secs;
    printf("%s: %u Hz PCM in, %u Hz out, tone at %.1f Hz\n", what, send_rate, want_rx_rate, hz);
    CHECK(hz > TONE_HZ - 15.0 && hz < TONE_HZ + 15.0);
    close_pair(a, b, &sa, &sb);
}

int main(void) {
    printf("roomkit-media %s: wideband audio\n", rkm_version());

    rkm_rtp_config cfg = loopback_config();
    cfg.payload_type = 111;
    cfg.audio_codec = "opus";
    tone_through("opus (default rate)", &cfg, 16000, 16000, 16000);
    tone_through("opus (PCM at 24 kHz per call)", &cfg, 16000, 24000, 16000);

    cfg = loopback_config();
    cfg.payload_type = 9;
    cfg.audio_sample_rate = RKM_AUDIO_RATE_CODEC;
    tone_through("G.722 (codec rate)", &cfg, 16000, 16000, 16000);
    tone_through("G.722 (PCM at 48 kHz per call)", &cfg, 16000, 48000, 16000);
    cfg.audio_sample_rate = 8000;
    tone_through("G.722 (8 kHz app)", &cfg, 8000, 8000, 8000);

    /* A format the library passes through: PCM is refused, payloads go as they are. */
    static side sa, sb;
    cfg = loopback_config();
    cfg.payload_type = 96;
    cfg.clock_rate = 16000;
    rkm_backend *a, *b;
    open_pair(&cfg, &a, &b, &sa, &sb);
    int16_t pcm[320] = {0};
    CHECK(rkm_send_audio(a, sa.session, pcm, 320) == RKM_ERR_UNSUPPORTED);
    const uint8_t frame[5] = {1, 2, 3, 4, 5};
    CHECK(rkm_send_audio_payload(a, sa.session, NULL, 5, 20) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_send_audio_payload(a, sa.session, frame, 5, 0) == RKM_ERR_INVALID_ARGUMENT);
    CHECK(rkm_send_audio_payload(a, "nope", frame, 5, 20) != RKM_OK);
    CHECK_OK(rkm_send_audio_payload(a, sa.session, frame, 5, 20));
    CHECK(wait_for(&sb.frames, 1, 3000));
    CHECK(atomic_load(&sb.payload_len) == 5 && memcmp(sb.payload, frame, 5) == 0);
    CHECK(atomic_load(&sb.rate) == 16000);
    close_pair(a, b, &sa, &sb);

    /* A rate the library does not convert to. */
    cfg = loopback_config();
    cfg.audio_sample_rate = 44100;
    CHECK(rkm_rtp_voice_backend_new(&cfg) == NULL);
    CHECK(strstr(rkm_last_error(), "audio_sample_rate") != NULL);
    cfg = loopback_config();
    cfg.audio_codec = "no-such-codec";
    CHECK(rkm_rtp_voice_backend_new(&cfg) == NULL);

    printf("ok: opus and G.722 at 8 and 16 kHz, payload passthrough, bad rates refused\n");
    return 0;
}
