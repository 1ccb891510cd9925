//! CPU time and resident memory of the processes under test, read from
//! `/proc` (Linux). A named process counts with all its descendants, so
//! PostgreSQL's backends are added to the postmaster.

use std::collections::HashMap;
use std::fs;

/// One sample of a process tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Proportional set size summed over the tree, in kilobytes: memory
    /// shared between processes (PostgreSQL's buffers) counts once.
    pub pss_kb: u64,
    /// The highest peak resident size (VmHWM) of any one process of the tree.
    pub peak_rss_kb: u64,
}

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`, 100 on every Linux we run on).
pub const TICKS_PER_SECOND: u64 = 100;

/// `(pid, parent pid, utime + stime)` of a `/proc/<pid>/stat` line.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// The kilobytes on the line starting with `field` of a `/proc/<pid>` file.
fn kb(pid: u32, file: &str, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples every named tree. A process that is gone reads as zero.
pub fn sample(roots: &[(String, u32)]) -> HashMap<String, Sample> {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut cpu: HashMap<u32, u64> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some((ppid, ticks)) = stat(pid) {
                parents.insert(pid, ppid);
                cpu.insert(pid, ticks);
            }
        }
    }
    let in_tree = |mut pid: u32, root: u32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parents.get(&pid) {
                Some(&p) if p != 0 && p != pid => pid = p,
                _ => return false,
            }
        }
        false
    };
    roots
        .iter()
        .map(|(name, root)| {
            let mut total = Sample::default();
            for (&pid, &ticks) in &cpu {
                if in_tree(pid, *root) {
                    total.cpu_ticks += ticks;
                    total.pss_kb += kb(pid, "smaps_rollup", "Pss:");
                    total.peak_rss_kb = total.peak_rss_kb.max(kb(pid, "status", "VmHWM:"));
                }
            }
            (name.clone(), total)
        })
        .collect()
}

/// The machine's CPU time so far, from the `cpu` line of `/proc/stat`, in
/// clock ticks: `(busy, idle, steal)`. Steal is time the hypervisor gave
/// to others while this machine wanted to run.
pub fn machine() -> (u64, u64, u64) {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    (busy, at(3) + at(4), at(7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        // Burn a little CPU so the figure cannot be zero by accident.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let s = sample(&[("me".to_owned(), me), ("gone".to_owned(), u32::MAX - 1)]);
        assert!(s["me"].pss_kb > 1000, "{:?}", s["me"]);
        assert!(s["me"].peak_rss_kb >= s["me"].pss_kb / 2, "{:?}", s["me"]);
        assert_eq!(s["gone"].pss_kb, 0);
        assert_eq!(s["gone"].cpu_ticks, 0);
        let (busy, idle, _) = machine();
        assert!(busy + idle > 0);
    }
}
