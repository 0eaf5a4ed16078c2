//! The data directory on a full and on a read-only filesystem (a small
//! tmpfs mounted by the test): writes get UNAVAILABLE saying why, reads go
//! on, nothing stored is damaged, and the server takes writes again by
//! itself once space returns or the filesystem is writable again.
//!
//! Mounting needs CAP_SYS_ADMIN (root in a container, as on this project's
//! CI machines); where the mount is refused the test says so and skips.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use reach::proto::{self, Channel, Status};
use tonic::Code;

struct Mount(PathBuf);

fn mount(args: &[&str], dir: &Path) -> bool {
    Command::new("mount")
        .args(args)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir,
        )
        .then(|| Mount(dir.to_path_buf()))
    }

    /// A small ext4 filesystem in `image`, mounted with errors=remount-ro:
    /// the kernel turns it read-only under open files when told it is
    /// damaged (`trigger_fs_error`), as it does on real disk errors.
    fn ext4(image: &Path, dir: &Path) -> Option<Mount> {
        let made = Command::new("truncate")
            .args(["-s", "64M"])
            .arg(image)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(image)
                .status()
                .is_ok_and(|s| s.success());
        (made
            && mount(
                &["-o", "loop,errors=remount-ro", image.to_str().unwrap()],
                dir,
            ))
        .then(|| Mount(dir.to_path_buf()))
    }

    fn ext4_existing(image: &Path, dir: &Path) -> Mount {
        assert!(
            mount(&["-o", "loop", image.to_str().unwrap()], dir),
            "remount the image"
        );
        Mount(dir.to_path_buf())
    }

    /// The ext4 sysfs directory of this mount (`/sys/fs/ext4/loopN`).
    fn ext4_sysfs(&self) -> Option<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let here = self.0.to_str()?;
        let device = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(here))?
            .split(' ')
            .next()?
            .trim_start_matches("/dev/")
            .to_string();
        Some(PathBuf::from("/sys/fs/ext4").join(device))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until it refuses another byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(&chunk[..4096]).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn write_until_refused(client: &mut Client, tag: &str) -> tonic::Status {
    let t = now_ms() - 60_000;
    for round in 0..200 {
        let events: Vec<_> = (0..500)
            .map(|i| {
                request(event(
                    &format!("{tag}-{round}-{i}"),
                    &format!("{tag}{}", i % 50),
                    Channel::Email,
                    Status::Delivered,
                    t + i,
                ))
            })
            .collect();
        if let Err(status) = client.record_events(tokio_stream::iter(events)).await {
            return status;
        }
    }
    panic!("{tag}: writes never failed");
}

async fn wait_for_writes(client: &mut Client, id: &str) -> Duration {
    let started = Instant::now();
    loop {
        let e = event(
            id,
            "after",
            Channel::Sms,
            Status::Delivered,
            now_ms() - 1_000,
        );
        match client.record_event(request(e)).await {
            Ok(_) => return started.elapsed(),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(started.elapsed() < Duration::from_secs(20), "no recovery");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn check_kept(client: &mut Client, kept: &[proto::ChannelEvent]) {
    let reply = client
        .record_events(tokio_stream::iter(
            kept.iter().cloned().map(request).collect::<Vec<_>>(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.duplicates, kept.len() as u64, "{reply:?}");
    for c in 0..10 {
        let p = profile(client, &format!("kept{c}")).await;
        assert_eq!(counts(&p, Channel::Sms).delivered, 20, "kept{c}");
    }
}

fn kept_events() -> Vec<proto::ChannelEvent> {
    let t = now_ms() - 3_600_000;
    (0..200)
        .map(|i| {
            event(
                &format!("kept-{i}"),
                &format!("kept{}", i % 10),
                Channel::Sms,
                Status::Delivered,
                t + i,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Mount::tmpfs(dir.path(), "48m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not permitted here (needs CAP_SYS_ADMIN)");
        return;
    };
    let data = dir.path().join("data");
    let server = ProcessServer::start(&data).await;
    let mut client = server.client().await;
    let kept = kept_events();
    for e in &kept {
        assert!(!record(&mut client, e.clone()).await);
    }

    let filler = fill(dir.path());
    let refused = write_until_refused(&mut client, "full").await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("No space left on device"),
        "{refused:?}"
    );
    // Reads go on.
    let p = profile(&mut client, "kept3").await;
    assert_eq!(counts(&p, Channel::Sms).delivered, 20);
    let best = best(&mut client, "kept3", &[]).await;
    assert_eq!(best.channel, Channel::Sms as i32);

    std::fs::remove_file(filler).unwrap();
    let took = wait_for_writes(&mut client, "after-full").await;
    eprintln!("disk: writes resumed {took:?} after space returned");
    check_kept(&mut client, &kept).await;

    // And what was stored survives a restart.
    server.kill();
    let server = ProcessServer::start(&data).await;
    let mut client = server.client().await;
    check_kept(&mut client, &kept).await;
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_gone_read_only_refuses_writes_keeps_reads_and_damages_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (image, mnt) = (dir.path().join("fs.img"), dir.path().join("mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let Some(mount) = Mount::ext4(&image, &mnt) else {
        eprintln!(
            "SKIPPED: a loop-mounted ext4 is not permitted here (needs CAP_SYS_ADMIN and loop devices)"
        );
        return;
    };
    let Some(trigger) = mount
        .ext4_sysfs()
        .map(|d| d.join("trigger_fs_error"))
        .filter(|p| p.exists())
    else {
        eprintln!("SKIPPED: this kernel has no ext4 trigger_fs_error");
        return;
    };
    let data = mnt.join("data");
    let server = ProcessServer::start(&data).await;
    let mut client = server.client().await;
    let kept = kept_events();
    for e in &kept {
        assert!(!record(&mut client, e.clone()).await);
    }

    // The kernel turns the filesystem read-only under the open store.
    std::fs::write(&trigger, "reach disk test").unwrap();
    let refused = write_until_refused(&mut client, "ro").await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("Read-only"), "{refused:?}");
    let p = profile(&mut client, "kept5").await;
    assert_eq!(counts(&p, Channel::Sms).delivered, 20);

    // An emergency read-only ext4 needs an fsck before it is writable
    // again: the operator's move. Then every stored event is there.
    server.kill();
    drop(mount);
    let fsck = Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(fsck.status.code().is_some_and(|c| c <= 1), "{fsck:?}");
    let _mount = Mount::ext4_existing(&image, &mnt);
    let server = ProcessServer::start(&data).await;
    let mut client = server.client().await;
    check_kept(&mut client, &kept).await;
    server.kill();
}
