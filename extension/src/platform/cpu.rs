//! The environment's CPU, as the kernel accounts it: where to read it (found once, at init) and
//! what it says (CPU time used so far, and how many vCPUs the environment may use).
//!
//! In order: cgroup v2 (`cpu.stat`'s `usage_usec`, `cpu.max`'s quota over period), cgroup v1
//! (`cpuacct.usage` in nanoseconds, `cpu.cfs_quota_us` over `cpu.cfs_period_us`), else the whole
//! machine from `/proc/stat` (every CPU's busy ticks, the CPUs it lists). The cgroup is the one
//! `/proc/self/cgroup` names under `/sys/fs/cgroup`, or the folder `ADMISSION_CPU_CGROUP` names.
//! Reading is two small files; nothing here runs on an invocation's path.

use std::path::{Path, PathBuf};

/// Where the environment's CPU use is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A cgroup v2 folder: `cpu.stat`, `cpu.max`.
    CgroupV2(PathBuf),
    /// cgroup v1: the `cpuacct` folder (`cpuacct.usage`) and the `cpu` folder (CFS quota).
    CgroupV1 { cpuacct: PathBuf, cpu: PathBuf },
    /// The whole machine.
    ProcStat,
}

/// `/proc/stat` counts in clock ticks of this length (USER_HZ, 100 on Linux everywhere).
const TICK_SECS: f64 = 0.01;

impl Source {
    /// The source this environment exposes: the cgroup `dir` if given (v2 if it has `cpu.stat`,
    /// else v1 if it has `cpuacct.usage`), else this process's own cgroup, else `/proc/stat`.
    /// `None`: nothing readable.
    pub fn find(dir: Option<&Path>) -> Option<Source> {
        if let Some(dir) = dir {
            return Source::in_folder(dir);
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root = Path::new("/sys/fs/cgroup");
        let found = cgroup_candidates(&own, root)
            .into_iter()
            .find(|s| s.used_secs().is_some());
        found.or_else(|| Source::ProcStat.used_secs().map(|_| Source::ProcStat))
    }

    fn in_folder(dir: &Path) -> Option<Source> {
        let candidates = [
            Source::CgroupV2(dir.to_path_buf()),
            Source::CgroupV1 {
                cpuacct: dir.to_path_buf(),
                cpu: dir.to_path_buf(),
            },
        ];
        candidates.into_iter().find(|s| s.used_secs().is_some())
    }

    /// What the status and the log say of it: `cgroup2:<dir>`, `cgroup1:<dir>`, `proc-stat`.
    pub fn describe(&self) -> String {
        match self {
            Source::CgroupV2(dir) => format!("cgroup2:{}", dir.display()),
            Source::CgroupV1 { cpuacct, .. } => format!("cgroup1:{}", cpuacct.display()),
            Source::ProcStat => "proc-stat".to_string(),
        }
    }

    /// CPU time used so far, in seconds (by the cgroup, or by the whole machine).
    pub fn used_secs(&self) -> Option<f64> {
        match self {
            Source::CgroupV2(dir) => {
                let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usec = field(&stat, "usage_usec")?;
                Some(usec / 1e6)
            }
            Source::CgroupV1 { cpuacct, .. } => {
                let ns = std::fs::read_to_string(cpuacct.join("cpuacct.usage")).ok()?;
                Some(ns.trim().parse::<f64>().ok()? / 1e9)
            }
            Source::ProcStat => {
                let stat = std::fs::read_to_string("/proc/stat").ok()?;
                proc_stat_busy_ticks(&stat).map(|t| t * TICK_SECS)
            }
        }
    }

    /// The vCPUs the environment may use: its CPU quota when it has one, else the CPUs it sees.
    pub fn vcpus(&self) -> f64 {
        let quota = match self {
            Source::CgroupV2(dir) => std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|m| cpu_max(&m)),
            Source::CgroupV1 { cpu, .. } => {
                let read = |f: &str| std::fs::read_to_string(cpu.join(f)).ok();
                match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
                    (Some(q), Some(p)) => quota_over_period(q.trim(), p.trim()),
                    _ => None,
                }
            }
            Source::ProcStat => None,
        };
        quota.unwrap_or_else(online_cpus)
    }
}

/// The cgroup folders `/proc/self/cgroup` names under `root`: the v2 one first, then v1's.
fn cgroup_candidates(proc_self_cgroup: &str, root: &Path) -> Vec<Source> {
    let under = |mount: &str, path: &str| root.join(mount).join(path.trim_start_matches('/'));
    let mut v2 = Vec::new();
    let (mut cpuacct, mut cpu) = (None, None);
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2.push(Source::CgroupV2(under("", path)));
            // A hybrid host mounts v2 at `unified`.
            v2.push(Source::CgroupV2(under("unified", path)));
            continue;
        }
        let names: Vec<&str> = controllers.split(',').collect();
        if names.contains(&"cpuacct") {
            cpuacct = Some(under(controllers, path));
        }
        if names.contains(&"cpu") {
            cpu = Some(under(controllers, path));
        }
    }
    if let Some(cpuacct) = cpuacct {
        let cpu = cpu.unwrap_or_else(|| cpuacct.clone());
        v2.push(Source::CgroupV1 { cpuacct, cpu });
    }
    v2
}

/// A `key value` line's value.
fn field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// `cpu.max`: `max 100000` (no quota) or `200000 100000` (two vCPUs).
fn cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period = parts.next().unwrap_or("100000");
    quota_over_period(quota, period)
}

fn quota_over_period(quota: &str, period: &str) -> Option<f64> {
    let (q, p) = (quota.parse::<f64>().ok()?, period.parse::<f64>().ok()?);
    (q > 0.0 && p > 0.0).then(|| q / p)
}

/// The first line of `/proc/stat`: every CPU's ticks but idle and iowait.
fn proc_stat_busy_ticks(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    (ticks.len() >= 4).then_some(busy)
}

fn online_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_are_read_as_the_kernel_writes_them() {
        assert_eq!(
            field("usage_usec 1500000\nuser_usec 1000000\n", "usage_usec"),
            Some(1_500_000.0)
        );
        assert_eq!(field("user_usec 5\n", "usage_usec"), None);
        assert_eq!(cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(cpu_max("max 100000\n"), None, "no quota");
        assert_eq!(quota_over_period("-1", "100000"), None, "v1's no quota");
        assert_eq!(quota_over_period("50000", "100000"), Some(0.5));
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n";
        assert_eq!(proc_stat_busy_ticks(stat), Some(161.0));
        assert_eq!(proc_stat_busy_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn the_processs_cgroup_is_found_v2_first_then_v1() {
        let root = Path::new("/r");
        let hybrid = "4:memory:/x\n3:cpu,cpuacct:/lambda/env\n0::/lambda/env\n";
        let found = cgroup_candidates(hybrid, root);
        assert_eq!(found[0], Source::CgroupV2(PathBuf::from("/r/lambda/env")));
        assert_eq!(
            found[1],
            Source::CgroupV2(PathBuf::from("/r/unified/lambda/env"))
        );
        assert_eq!(
            found[2],
            Source::CgroupV1 {
                cpuacct: PathBuf::from("/r/cpu,cpuacct/lambda/env"),
                cpu: PathBuf::from("/r/cpu,cpuacct/lambda/env"),
            }
        );
        let split = "2:cpuacct:/a\n1:cpu:/b\n";
        assert_eq!(
            cgroup_candidates(split, root),
            vec![Source::CgroupV1 {
                cpuacct: PathBuf::from("/r/cpuacct/a"),
                cpu: PathBuf::from("/r/cpu/b"),
            }]
        );
        assert!(cgroup_candidates("garbage\n\n", root).is_empty());
    }

    #[test]
    fn a_folder_given_is_read_as_v2_or_v1_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("admission-cpu-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Source::find(Some(&dir)), None, "an empty folder");
        std::fs::write(dir.join("cpuacct.usage"), "2500000000\n").unwrap();
        std::fs::write(dir.join("cpu.cfs_quota_us"), "150000\n").unwrap();
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000\n").unwrap();
        let v1 = Source::find(Some(&dir)).unwrap();
        assert_eq!(v1.describe(), format!("cgroup1:{}", dir.display()));
        assert_eq!((v1.used_secs(), v1.vcpus()), (Some(2.5), 1.5));
        std::fs::write(dir.join("cpu.stat"), "usage_usec 4000000\n").unwrap();
        std::fs::write(dir.join("cpu.max"), "200000 100000\n").unwrap();
        let v2 = Source::find(Some(&dir)).unwrap();
        assert_eq!((v2.used_secs(), v2.vcpus()), (Some(4.0), 2.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_machine_exposes_a_source_whose_count_advances_with_work() {
        let source = Source::find(None).expect("a cgroup or /proc/stat");
        let before = source.used_secs().unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = source.used_secs().unwrap();
        assert!(
            after - before >= 0.05,
            "{}: {before} → {after} after 200 ms of work",
            source.describe()
        );
        assert!(source.vcpus() > 0.0);
    }
}
