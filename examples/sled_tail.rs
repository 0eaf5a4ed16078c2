//! How long a durable write waits while sled gives back its log file's
//! tail: the measurement behind the sixth change to the vendored sled
//! (vendor/sled/README.md).
//!
//! ```sh
//! cargo run --release --example sled_tail -- /tmp/sled-tail 300000
//! ```
//!
//! Grows a sled log with N values of 1,000 bytes (about 400 MiB for
//! 300,000), then rewrites every key three times with 50 bytes, so that
//! sled's cleaning frees the log and its tail comes free, while a probe
//! thread makes a durable write (an insert and a flush, as reach's group
//! commit does) every 5 ms. For each drop of the file's size it prints the
//! worst probe within a second of it, then the probes' percentiles. Which
//! runs shrink, and by how much, is sled's cleaning's business: repeat a
//! run that prints no shrink. The directory is emptied first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// Keys spread over the tree as reach's contacts are.
fn key(i: u64) -> [u8; 8] {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes()
}

fn file_mib(dir: &str) -> u64 {
    std::fs::metadata(format!("{dir}/db")).map_or(0, |m| m.len() >> 20)
}

/// A probe's latency and when it started, in microseconds and
/// milliseconds since the probe began.
struct Probe {
    latency_us: u64,
    at_ms: u64,
}

fn probe(db: sled::Db, dir: String, stop: Arc<AtomicBool>) -> (Vec<Probe>, Vec<(u64, u64)>) {
    let (mut probes, mut sizes) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        db.insert(b"probe", &n.to_le_bytes()).expect("insert");
        db.flush().expect("flush");
        probes.push(Probe {
            latency_us: at.elapsed().as_micros() as u64,
            at_ms: at.duration_since(start).as_millis() as u64,
        });
        n += 1;
        if n.is_multiple_of(20) {
            sizes.push((start.elapsed().as_millis() as u64, file_mib(&dir)));
        }
        thread::sleep(Duration::from_millis(5));
    }
    (probes, sizes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp/sled-tail".into());
    let n: u64 = args.next().map_or(300_000, |s| s.parse().expect("N"));
    let _ = std::fs::remove_dir_all(&dir);
    // reach's settings: a 64 MiB cache, sled's flusher every 50 ms.
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(64 << 20)
        .flush_every_ms(Some(50))
        .open()
        .expect("open");
    let big = vec![7u8; 1000];
    for i in 0..n {
        db.insert(key(i), &big[..]).expect("insert");
    }
    db.flush().expect("flush");
    println!("grown to {} MiB", file_mib(&dir));

    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (db, dir, stop) = (db.clone(), dir.clone(), stop.clone());
        thread::spawn(move || probe(db, dir, stop))
    };
    let small = [1u8; 50];
    for _ in 0..3 {
        for i in 0..n {
            db.insert(key(i), &small[..]).expect("insert");
        }
    }
    // sled's cleaning goes on after the writes.
    thread::sleep(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    let (probes, sizes) = prober.join().expect("probe thread");
    println!("ended at {} MiB", file_mib(&dir));

    for pair in sizes.windows(2) {
        let ((before_ms, before), (after_ms, after)) = (pair[0], pair[1]);
        if after + 8 <= before {
            let worst = probes
                .iter()
                .filter(|p| p.at_ms + 1000 >= before_ms && p.at_ms <= after_ms + 1000)
                .map(|p| p.latency_us)
                .max()
                .unwrap_or(0);
            println!(
                "shrank {before} -> {after} MiB at {after_ms} ms: worst probe within 1 s {worst} us"
            );
        }
    }
    let mut latencies: Vec<u64> = probes.iter().map(|p| p.latency_us).collect();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{} probes: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        latencies.last().copied().unwrap_or(0)
    );
}
