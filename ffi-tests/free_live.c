/* Freeing backends that still have live sessions, and media still arriving: every session gets
 * its client_disconnected callback before rkm_backend_free returns, and afterwards the process
 * holds no extra threads or file descriptors, however many times it is repeated. */
#include "common.h" /* first: it selects POSIX.1-2008 */

#include <dirent.h>

static atomic_int ready, disconnected, frames;

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

static void on_ready(void *ud, const rkm_session_info *info) {
    (void)ud;
    (void)info;
    atomic_fetch_add(&ready, 1);
}

static void on_disconnected(void *ud, const rkm_session_info *info) {
    (void)ud;
    CHECK(strlen(info->session_id) == RKM_SESSION_ID_LEN - 1);
    atomic_fetch_add(&disconnected, 1);
}

/* A slow consumer, so frames are still queued when the backend is freed. */
static void slow_video(void *ud, const char *sid, const rkm_video_frame *f) {
    (void)ud;
    (void)sid;
    (void)f;
    sleep_ms(5);
    atomic_fetch_add(&frames, 1);
}

static void one_round(int round) {
    atomic_store(&ready, 0);
    atomic_store(&disconnected, 0);
    rkm_rtp_config cfg = loopback_config();
    cfg.callback_threads = 2;
    /* Every other round on shared I/O threads: freeing must join and close those too. */
    cfg.io_threads = (round % 2) ? 2 : 0;
    rkm_backend *tx = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *rx = rkm_rtp_video_backend_new(&cfg);
    rkm_backend *voice = rkm_rtp_voice_backend_new(&cfg);
    CHECK(tx != NULL && rx != NULL && voice != NULL);
    rkm_backend *all[3] = {tx, rx, voice};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(rkm_on_session_ready(all[i], on_ready, NULL));
        CHECK_OK(rkm_on_client_disconnected(all[i], on_disconnected, NULL));
    }
    CHECK_OK(rkm_on_video_received(rx, slow_video, NULL));

    char tx_id[RKM_SESSION_ID_LEN], rx_id[RKM_SESSION_ID_LEN], id[RKM_SESSION_ID_LEN];
    connect_pair(tx, rx, tx_id, rx_id);
    /* More sessions that never see media: two more on rx, two on the voice backend. */
    for (int i = 0; i < 2; i++) {
        CHECK_OK(rkm_connect(rx, "room", "extra", "127.0.0.1:9", "127.0.0.1:9", id, sizeof id));
        CHECK_OK(rkm_connect(voice, "room", "caller", "127.0.0.1:9", NULL, id, sizeof id));
    }
    CHECK(wait_for(&ready, 6, 3000));
    CHECK(rkm_session_count(rx) == 3 && rkm_session_count(voice) == 2);

    for (int i = 0; i < 20; i++) {
        size_t len;
        uint8_t *p = h264_picture(i == 0, 1500, (uint32_t)(round * 100 + i), &len);
        CHECK_OK(rkm_send_video(tx, tx_id, p, len));
        free(p);
    }
    /* Free the receiver while its callbacks are busy and packets are in flight. */
    rkm_backend_free(rx);
    CHECK(atomic_load(&disconnected) >= 3);
    /* rx's sessions said RTCP BYE as they closed: tx's session, their peer, ends by itself. */
    CHECK(wait_for(&disconnected, 4, 3000));
    CHECK(rkm_session_count(tx) == 0);
    rkm_backend_free(voice);
    CHECK(atomic_load(&disconnected) == 6);
    rkm_backend_free(tx);
    CHECK(atomic_load(&disconnected) == 6);
}

/* The threads of this process once they settle. A joined thread can linger in /proc/self/task
 * for a moment after pthread_join has returned (the kernel reaps it just after it wakes the
 * joiner), so wait, bounded, for the count to come down to `want`. */
static int settled_threads(int want) {
    double deadline = now_ms() + (double)scaled_ms(2000);
    int n = count_entries("/proc/self/task");
    while (n > want && now_ms() < deadline) {
        sleep_ms(5);
        n = count_entries("/proc/self/task");
    }
    return n;
}

int main(void) {
    one_round(0); /* warm-up: the C runtime and sanitizers may start threads of their own once */
    int threads = settled_threads(1); /* this test starts no threads of its own */
    int fds = count_entries("/proc/self/fd");
    for (int round = 1; round <= 10; round++) {
        one_round(round);
    }
    int threads_after = settled_threads(threads);
    int fds_after = count_entries("/proc/self/fd");
    if (threads_after != threads || fds_after != fds) {
        fprintf(stderr, "threads %d -> %d, fds %d -> %d\n", threads, threads_after, fds,
                fds_after);
        return 1;
    }
    printf("ok: 11 rounds of freeing live backends; %d frames seen; threads %d, fds %d steady\n",
           atomic_load(&frames), threads, fds);
    return 0;
}
