//! Child processes of the harness: started with their output captured, read line by line for
//! readiness, measured through `/proc` (CPU time, peak memory), and always stopped on drop.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process; dropping it stops it (SIGTERM, then SIGKILL after 5 s).
pub struct Child {
    name: String,
    inner: std::process::Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("pid", &self.inner.id())
            .finish()
    }
}

impl Child {
    /// Starts `command`, its stdout read line by line, its stderr appended to `log`, its stdin
    /// a pipe held open until the child is dropped (a child may exit when it closes).
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Child> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let mut inner = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let stdout = inner.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Child {
            name: name.into(),
            inner,
            lines,
            log: log.to_owned(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The next stdout line, within `timeout`; an error names the log if the child died.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("{} said nothing for {timeout:?}", self.name)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.inner.wait().ok();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                bail!(
                    "{} exited ({status:?}); last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it, trimmed.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .next_line(left)
                .with_context(|| format!("waiting for `{prefix}…` from {}", self.name))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    /// User plus system CPU time so far, seconds (all threads), from `/proc/PID/stat`.
    pub fn cpu_seconds(&self, ticks_per_second: f64) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .with_context(|| format!("reading /proc/{}/stat ({})", self.pid(), self.name))?;
        cpu_ticks(&stat)
            .map(|ticks| ticks as f64 / ticks_per_second)
            .with_context(|| format!("parsing /proc/{}/stat", self.pid()))
    }

    /// Waits until the process is idle (under 2% of a core over 250 ms), at most `limit`;
    /// returns how long that took. Work a server defers past the load window (loss notices
    /// queued for its background sender) is then done before the next window starts.
    pub fn settle(&self, ticks_per_second: f64, limit: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let step = Duration::from_millis(250);
        let mut last = self.cpu_seconds(ticks_per_second)?;
        while start.elapsed() < limit {
            std::thread::sleep(step);
            let now = self.cpu_seconds(ticks_per_second)?;
            if now - last < 0.02 * step.as_secs_f64() {
                break;
            }
            last = now;
        }
        Ok(start.elapsed())
    }

    /// Peak resident memory so far (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("reading /proc/{}/status", self.pid()))?;
        vm_hwm_kib(&status)
            .map(|kib| kib as f64 / 1024.0)
            .context("no VmHWM in /proc/PID/status")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Closing stdin is the polite stop for the bidders subcommand; SIGTERM for servers.
        drop(self.inner.stdin.take());
        if matches!(self.inner.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.inner.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

/// utime + stime, clock ticks, from the text of `/proc/PID/stat` (fields 14 and 15; the
/// command name in parentheses may hold spaces, so count from the last `)`).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` in KiB from the text of `/proc/PID/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when getconf is missing).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One request with a fresh connection, `Connection: close`; returns the status code. Used to
/// check a server answers as the scenario expects before loading it.
pub fn probe(addr: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
    let mut stream = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connecting to {addr} for the probe"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut head = String::new();
    BufReader::new(stream)
        .read_line(&mut head)
        .context("reading the probe's status line")?;
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {head:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_counts_from_the_last_parenthesis() {
        let stat = "4242 (bourse (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 150 37 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(187));
    }

    #[test]
    fn vm_hwm_reads_kib() {
        let status = "Name:\tbourse\nVmPeak:\t  900 kB\nVmHWM:\t   57344 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(57344));
    }
}
