//! `roomkit-media netsim --rate-kbps --queue-ms --rate-step` over real sockets: a sender offering
//! 2 Mbit/s through a 1 Mbit/s drop-tail bottleneck gets about 1 Mbit/s through, the queue sits
//! near its limit and drops the rest; a step to 4 Mbit/s lets the whole offer through.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::support::netsim::{field, Netsim, Path};

#[test]
fn netsim_bottleneck_limits_rate_queues_drops_and_steps() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let target = rx.local_addr().unwrap();
    let clean = Path {
        loss_pct: 0.0,
        delay_ms: 5,
        jitter_ms: 0,
        reorder_pct: 0.0,
        duplicate_pct: 0.0,
        seed: 7,
    };
    // 1 Mbit/s with a 100 ms queue; 4 Mbit/s from 2 s on.
    let mut sim = Netsim::start_with(
        &[format!("127.0.0.1:0={target}")],
        &clean,
        &[
            "--rate-kbps",
            "1000",
            "--queue-ms",
            "100",
            "--rate-step",
            "2:4000",
        ],
        30,
    );
    let listen = sim.pipes[0].0;
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();

    // The sender offers 2 Mbit/s (1,000-byte datagrams, catching up after an oversleep) for 4 s;
    // a thread of its own, so the receiver's timestamps are not held up by it.
    const OFFER_BPS: f64 = 2_000_000.0;
    const SECONDS: f64 = 4.0;
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let payload = [0x55u8; 1000];
        let mut sent = 0u64;
        while start.elapsed().as_secs_f64() < SECONDS {
            let due = (start.elapsed().as_secs_f64() * OFFER_BPS / 8000.0) as u64;
            while sent < due {
                tx.send_to(&payload, listen).unwrap();
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (start, sent)
    });

    // Bytes received in each 100 ms slot after the first datagram's arrival.
    let mut slots = vec![0u64; 60];
    let mut first: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < 20 {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) => {
                quiet = 0;
                let t0 = *first.get_or_insert_with(Instant::now);
                let slot = (t0.elapsed().as_millis() / 100) as usize;
                if let Some(s) = slots.get_mut(slot) {
                    *s += n as u64;
                }
            }
            Err(_) => quiet += 1,
        }
    }
    let (_, sent) = sender.join().unwrap();
    let stats = sim.stop();
    let fw = stats.find("\"forward\"").expect(&stats);
    let rate = |from: usize, to: usize| -> f64 {
        slots[from..to].iter().sum::<u64>() as f64 * 8.0 / ((to - from) as f64 / 10.0)
    };
    // 0.3-1.7 s: the link is full; 2.5-3.5 s: the offer passes whole at 4 Mbit/s.
    let (narrow, wide) = (rate(3, 17), rate(25, 35));
    let dropped = field(&stats, fw, "queue_dropped");
    let p95 = field(&stats, fw, "queue_delay_p95_ms");
    eprintln!("sent {sent}, narrow {narrow:.0} bit/s, wide {wide:.0} bit/s; netsim {stats}");
    // The link delivers no more than its rate (margin for the receive loop's slot edges) and,
    // with the queue always full, not much less.
    assert!(narrow <= 1_150_000.0, "narrow: {narrow}");
    assert!(narrow >= 700_000.0, "narrow: {narrow}");
    // After the step the queue empties and the whole offer passes (floor with margin for a
    // loaded sender).
    assert!(wide >= 1_300_000.0, "wide: {wide}");
    // Half the offer died at the full queue for 2 s: about 250 datagrams.
    assert!((100..=400).contains(&dropped), "queue_dropped {dropped}");
    // The queue stood near its 100 ms limit while the link was narrow.
    assert!((60..=110).contains(&p95), "queue p95 {p95} ms");
    assert_eq!(field(&stats, fw, "lost"), 0);
}
