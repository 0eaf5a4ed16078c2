//! The whole machine's CPU time, so that a soak's slow minute can be told
//! apart from a machine that was busy or whose host took its CPU away: on a
//! VM, "steal" is time the hypervisor ran someone else while this guest
//! wanted to run.

/// Clock ticks of every CPU since boot (Linux `/proc/stat`, first line).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTimes {
    total: u64,
    /// Idle and waiting for I/O: time nothing wanted the CPU.
    idle: u64,
    stolen: u64,
}

/// How a stretch of time between two readings was spent, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuShares {
    /// Running anything (user, system, interrupts), in this guest.
    pub busy: f64,
    /// Wanted by this guest but given by the host to another.
    pub stolen: f64,
}

impl CpuTimes {
    /// Now; `None` where `/proc/stat` is not there (not Linux).
    pub fn now() -> Option<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The shares of the time from `self` until `later`.
    pub fn shares_until(self, later: CpuTimes) -> CpuShares {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return CpuShares::default();
        }
        let idle = later.idle.saturating_sub(self.idle);
        let stolen = later.stolen.saturating_sub(self.stolen);
        let percent = |ticks: u64| ticks as f64 * 100.0 / total as f64;
        CpuShares {
            busy: percent(total.saturating_sub(idle + stolen)),
            stolen: percent(stolen),
        }
    }
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`;
/// guest time is already counted in user and nice, so it is left out.
fn parse(stat: &str) -> Option<CpuTimes> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(CpuTimes {
        total: fields.iter().take(8).sum(),
        idle: field(3) + field(4),
        stolen: field(7),
    })
}

/// Clock ticks per second of `/proc`'s CPU times: the kernel's `USER_HZ`,
/// 100 on every architecture Linux exports it for.
const USER_HZ: u64 = 100;

/// CPU time (user and system) process `pid` has used since it started;
/// `None` where `/proc/<pid>/stat` is not there.
pub fn process_cpu(pid: u32) -> Option<std::time::Duration> {
    parse_process(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid ...`: utime and stime are the 12th and 13th
/// fields after the command name, which may itself hold spaces and ")".
fn parse_process(stat: &str) -> Option<std::time::Duration> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis(
        (utime + stime) * 1000 / USER_HZ,
    ))
}

/// Read system calls on files (`read`, `pread64`, `readv`...) process
/// `pid` has made so far: `syscr` of `/proc/<pid>/io`. Socket reads through
/// `recvfrom` are not counted there, so for reach it is the store's reads:
/// sled reads each log fragment of a page it does not hold in its cache
/// with two of them (the fragment's header, then its body).
pub fn process_file_reads(pid: u32) -> Option<u64> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

fn parse_io(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_time_is_its_user_and_system_ticks() {
        let stat =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 31 0 0 20 0 9 0 100 0 0";
        assert_eq!(
            parse_process(stat),
            Some(std::time::Duration::from_millis(2_810))
        );
        assert_eq!(parse_process("4242 (reach) S 1"), None);
        assert_eq!(parse_process("garbage"), None);
        assert!(process_cpu(std::process::id()).is_some());
    }

    #[test]
    fn a_process_file_reads_are_its_read_syscalls() {
        let io = "rchar: 9120\nwchar: 0\nsyscr: 42\nsyscw: 7\nread_bytes: 0\n";
        assert_eq!(parse_io(io), Some(42));
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert_eq!(parse_io("syscr: x\n"), None);
        let me = std::process::id();
        let before = process_file_reads(me).expect("/proc/self/io");
        std::fs::read_to_string("/proc/self/stat").expect("read");
        assert!(process_file_reads(me).expect("/proc/self/io") > before);
    }

    #[test]
    fn busy_and_stolen_shares_come_from_the_difference_of_two_readings() {
        let before = parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        // 1,000 ticks later: 500 user, 100 system, 200 idle, 100 iowait,
        // 100 stolen; 40 of the user ticks ran a guest (not counted twice).
        let later = parse("cpu  600 0 150 1000 150 0 0 100 40 0\n").unwrap();
        assert_eq!(
            before.shares_until(later),
            CpuShares {
                busy: 60.0,
                stolen: 10.0
            }
        );
        assert_eq!(later.shares_until(later), CpuShares::default());
    }

    #[test]
    fn an_older_kernel_without_steal_or_a_foreign_file_is_handled() {
        let old = parse("cpu  10 0 10 80\n").unwrap();
        assert_eq!((old.total, old.idle, old.stolen), (100, 80, 0));
        assert_eq!(parse("intr 1 2 3\n"), None);
        assert_eq!(parse("cpu  1 x 3\n"), None);
    }
}
