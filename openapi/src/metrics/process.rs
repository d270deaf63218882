//! The process's own figures, read from `/proc/self` at each scrape: memory, CPU time, start
//! time and file descriptors. The `prometheus` crate's `process` feature would bring `procfs`;
//! these few lines read the same files. On a system without `/proc` the figures are left out.

use prometheus::{Counter, Gauge, IntGauge, Registry};

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`): 100 on every Linux the service is
/// built for (x86-64, aarch64), whatever the kernel's own tick.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone)]
pub(super) struct Figures {
    cpu: Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
}

impl Figures {
    /// Registers the figures, if this system has `/proc/self`.
    pub(super) fn register(registry: &Registry) -> Option<Self> {
        let stat = Stat::read()?;
        let boot = boot_time()?;
        let add = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("register metric");
        };
        let start = Gauge::new(
            "stockflow_process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch",
        )
        .expect("metric");
        start.set(boot + stat.start_ticks / TICKS_PER_SECOND);
        let figures = Self {
            cpu: Counter::new(
                "stockflow_process_cpu_seconds_total",
                "CPU time the process has used, user and system",
            )
            .expect("metric"),
            resident: IntGauge::new(
                "stockflow_process_resident_memory_bytes",
                "Resident memory of the process",
            )
            .expect("metric"),
            virtual_memory: IntGauge::new(
                "stockflow_process_virtual_memory_bytes",
                "Virtual memory of the process",
            )
            .expect("metric"),
            open_fds: IntGauge::new(
                "stockflow_process_open_fds",
                "File descriptors the process has open (connections among them)",
            )
            .expect("metric"),
            max_fds: IntGauge::new(
                "stockflow_process_max_fds",
                "The most file descriptors the process may open (its soft limit)",
            )
            .expect("metric"),
        };
        add(Box::new(start));
        add(Box::new(figures.cpu.clone()));
        add(Box::new(figures.resident.clone()));
        add(Box::new(figures.virtual_memory.clone()));
        add(Box::new(figures.open_fds.clone()));
        add(Box::new(figures.max_fds.clone()));
        figures.update();
        Some(figures)
    }

    /// Reads the figures again.
    pub(super) fn update(&self) {
        if let Some(stat) = Stat::read() {
            let cpu = stat.cpu_ticks / TICKS_PER_SECOND;
            let have = self.cpu.get();
            if cpu > have {
                self.cpu.inc_by(cpu - have);
            }
            self.virtual_memory.set(stat.virtual_bytes as i64);
        }
        if let Some(kb) = status_field("VmRSS:") {
            self.resident.set((kb * 1024) as i64);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max as i64);
        }
    }
}

/// The figures of `/proc/self/stat` used here.
#[derive(Debug, PartialEq)]
struct Stat {
    /// User and system time, in clock ticks.
    cpu_ticks: f64,
    /// When the process started, in clock ticks after boot.
    start_ticks: f64,
    virtual_bytes: u64,
}

impl Stat {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Fields are counted from 1 as in proc(5); the second (the command, in parentheses) may
    /// hold spaces, so counting starts after its closing parenthesis, at the third.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            cpu_ticks: (field(14)? + field(15)?) as f64,
            start_ticks: field(22)? as f64,
            virtual_bytes: field(23)?,
        })
    }
}

/// A figure of `/proc/self/status` given in kB (`VmRSS:`).
fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When the system booted, in seconds since the Unix epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open files (`Max open files` of `/proc/self/limits`).
fn max_open_files() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (stock (flow) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    250 50 0 0 20 0 9 0 123456 1048576 2000 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                cpu_ticks: 300.0,
                start_ticks: 123456.0,
                virtual_bytes: 1048576,
            })
        );
    }

    #[test]
    fn this_process_reads() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let r = Registry::new();
            assert!(Figures::register(&r).is_some());
            let names: Vec<String> = r.gather().iter().map(|f| f.name().to_owned()).collect();
            assert!(names.contains(&"stockflow_process_resident_memory_bytes".to_owned()));
        }
    }
}
