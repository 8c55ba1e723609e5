/*
 * libsrtp's cost per packet, measured the way bench/srtp.rs's summary measures ours: one
 * srtp_protect plus one srtp_unprotect (sender and receiver sessions, replay window 1,024) of an
 * audio-sized (172 bytes) and a video-sized (1,200 bytes) RTP packet, per suite. Each packet is
 * first copied into the working buffer (libsrtp works in place; ours hands a new buffer back,
 * so both sides pay one copy of the plain packet at least).
 *
 * Reported per suite and size: the median over ROUNDS rounds of the thread's CPU time per packet
 * and of the wall time per packet, in nanoseconds, one line each:
 *   libsrtp SUITE LEN cpu_ns=N wall_ns=N
 *
 * Only for bench/libsrtp.sh, which builds it with `cc` against the system's libsrtp2
 * (Debian: libsrtp2-dev). Not part of the build of roomkit-media.
 */
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 15
#define WARMUP 20000

static double now(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check(srtp_err_status_t st, const char *what)
{
    if (st != srtp_err_status_ok) {
        fprintf(stderr, "libsrtp: %s failed (status %d)\n", what, (int)st);
        exit(1);
    }
}

static void set_suite(srtp_policy_t *p, const char *suite)
{
    if (strcmp(suite, "AES_CM_128_HMAC_SHA1_80") == 0) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtcp);
    } else if (strcmp(suite, "AES_CM_128_HMAC_SHA1_32") == 0) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtcp);
    } else {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtcp);
    }
}

static srtp_t session(const char *suite, unsigned char *key, srtp_ssrc_type_t dir)
{
    srtp_policy_t p;
    srtp_t s;
    memset(&p, 0, sizeof p);
    set_suite(&p, suite);
    p.ssrc.type = dir;
    p.key = key;
    p.window_size = 1024;
    p.allow_repeat_tx = 0;
    p.next = NULL;
    check(srtp_create(&s, &p), "srtp_create");
    return s;
}

static void run(const char *suite, int len, long per_round)
{
    unsigned char key[64];
    unsigned char plain[1500], buf[1500 + SRTP_MAX_TRAILER_LEN];
    double cpu[ROUNDS], wall[ROUNDS];
    unsigned short seq = 0;
    srtp_t tx, rx;
    int r;
    long i;

    for (i = 0; i < (long)sizeof key; i++)
        key[i] = (unsigned char)(i * 37 + 11);
    tx = session(suite, key, ssrc_any_outbound);
    rx = session(suite, key, ssrc_any_inbound);
    memset(plain, 0x5a, sizeof plain);
    memcpy(plain, "\x80\x60\x00\x00\x00\x00\x00\x00\x11\x22\x33\x44", 12);

    for (r = -1; r < ROUNDS; r++) {
        long n = r < 0 ? WARMUP : per_round;
        double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
        for (i = 0; i < n; i++) {
            int l = len;
            seq++;
            plain[2] = (unsigned char)(seq >> 8);
            plain[3] = (unsigned char)seq;
            memcpy(buf, plain, (size_t)len);
            check(srtp_protect(tx, buf, &l), "srtp_protect");
            check(srtp_unprotect(rx, buf, &l), "srtp_unprotect");
            if (l != len) {
                fprintf(stderr, "libsrtp: unprotect gave %d bytes, not %d\n", l, len);
                exit(1);
            }
        }
        if (r >= 0) {
            cpu[r] = (now(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
            wall[r] = (now(CLOCK_MONOTONIC) - w0) / (double)n;
        }
    }
    qsort(cpu, ROUNDS, sizeof cpu[0], cmp);
    qsort(wall, ROUNDS, sizeof wall[0], cmp);
    printf("libsrtp %-23s %5d cpu_ns=%.0f wall_ns=%.0f\n", suite, len, cpu[ROUNDS / 2],
           wall[ROUNDS / 2]);
    srtp_dealloc(tx);
    srtp_dealloc(rx);
}

int main(void)
{
    /* The same order as SrtpSuite::ALL. */
    static const char *suites[] = {"AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM",
                                   "AES_CM_128_HMAC_SHA1_32"};
    static const int lens[] = {172, 1200};
    size_t s, l;

    check(srtp_init(), "srtp_init");
    printf("libsrtp %s\n", srtp_get_version_string());
    for (l = 0; l < 2; l++)
        for (s = 0; s < 3; s++)
            run(suites[s], lens[l], lens[l] > 500 ? 20000 : 40000);
    srtp_shutdown();
    return 0;
}
