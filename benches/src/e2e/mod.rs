//! The end-to-end A/B/A harness: bourse against the bare baseline forwarder on loopback, with
//! simulated partners in a separate process and closed-loop load from `wrk`, measuring
//! throughput, latency, server CPU per auction and peak memory per scenario.

pub mod bidders;
pub mod child;
pub mod wrk;

use anyhow::{Context, bail};
use child::Child;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The bid requests' `tmax`, milliseconds.
pub const TMAX_MS: u64 = 100;
/// bourse's own share of `tmax` (`budget_ms`); the partners get the rest.
pub const BUDGET_MS: u64 = 20;
/// How long each partner gets: what bourse derives from `tmax`, and the baseline's timeout.
pub const BIDDER_DEADLINE_MS: u64 = TMAX_MS - BUDGET_MS;
/// The longest wait for a process to become idle between windows.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// Four partners answering at once with a bid on every impression.
    #[value(name = "4-bidders")]
    #[serde(rename = "4-bidders")]
    FourBidders,
    /// One partner answering at once.
    #[value(name = "1-bidder")]
    #[serde(rename = "1-bidder")]
    OneBidder,
    /// A video request while every partner buys banner only: bourse answers 204 without
    /// fan-out (the baseline would still forward, so it is not run).
    NoBid,
    /// One of four partners never answers: every auction waits for its deadline.
    Hanging,
}

impl ScenarioName {
    fn as_str(self) -> &'static str {
        match self {
            ScenarioName::FourBidders => "4-bidders",
            ScenarioName::OneBidder => "1-bidder",
            ScenarioName::NoBid => "no-bid",
            ScenarioName::Hanging => "hanging",
        }
    }
}

/// `bourse-e2e run` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenarios to run, in order (comma-separated or repeated).
    #[arg(long = "scenario", value_delimiter = ',', default_values = ["4-bidders", "1-bidder", "no-bid", "hanging"])]
    pub scenarios: Vec<ScenarioName>,
    /// Seconds of measured load per run (`10` or `10s`).
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub duration: u64,
    /// Seconds of unmeasured load before a server's first run.
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub warmup: u64,
    /// Baseline-then-bourse pairs after the first bourse run: 1 gives A/B/A, 2 gives A/B/A/B/A.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// wrk connections (each has one request in flight).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Each partner's price (CPM) is this plus 0.1 times its index.
    #[arg(long, default_value_t = 1.0)]
    pub price: f64,
    /// Do not fire losing partners' `lurl` (the baseline fires no notices); bourse's default
    /// is to fire them.
    #[arg(long)]
    pub no_losses: bool,
    /// The bourse binary; default: `bourse` beside this one (`cargo build --release -p bourse`).
    #[arg(long)]
    pub bourse: Option<PathBuf>,
    /// The baseline binary; default: `baseline` beside this one.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bourse-e2e.json")]
    pub json: PathBuf,
    /// Where configs, scripts and the children's logs go; default: a fresh directory in /tmp.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// `10` or `10s`.
fn seconds(text: &str) -> Result<u64, String> {
    let digits = text.strip_suffix('s').unwrap_or(text);
    digits
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of seconds"))
}

/// One measured load window on one server.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Scenario name.
    pub scenario: ScenarioName,
    /// `bourse` or `baseline`.
    pub server: &'static str,
    /// What wrk measured.
    pub wrk: wrk::Summary,
    /// Completed requests per second.
    pub rps: f64,
    /// Server CPU (user + system, all threads) from the start of the window until the server
    /// was idle again, seconds.
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent after the load stopped, until the server was idle.
    pub deferred_cpu_seconds: f64,
    /// How long the server took to become idle after the load stopped, ms.
    pub settle_ms: u64,
    /// Server CPU per completed request, microseconds.
    pub cpu_us_per_request: f64,
    /// Server peak resident memory since it started (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
}

/// A scenario's result: its runs in order and the ratios of bourse to the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: ScenarioName,
    /// bourse, then baseline and bourse `rounds` times; or bourse alone.
    pub runs: Vec<Run>,
    /// Mean bourse throughput over the baseline's.
    pub throughput_ratio: Option<f64>,
    /// Mean bourse CPU per request over the baseline's.
    pub cpu_ratio: Option<f64>,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// `nproc`.
    pub cpus: usize,
    /// Load parameters.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// Measured seconds per run.
    pub duration_secs: u64,
    /// Whether bourse fired loss notices.
    pub losses: bool,
    /// Request `tmax`, ms.
    pub tmax_ms: u64,
    /// Per scenario.
    pub scenarios: Vec<ScenarioResult>,
}

/// A bid request for load: `at` 2, `tmax` [`TMAX_MS`], every floor (deals' too) at 0.01 so
/// the partners' bids clear; written compact.
pub fn load_body(json: &str) -> anyhow::Result<String> {
    let mut request: serde_json::Value = serde_json::from_str(json)?;
    request["at"] = 2.into();
    request["tmax"] = TMAX_MS.into();
    for imp in request["imp"].as_array_mut().context("no imp array")? {
        imp["bidfloor"] = 0.01.into();
        if let Some(deals) = imp.pointer_mut("/pmp/deals").and_then(|d| d.as_array_mut()) {
            for deal in deals {
                deal["bidfloor"] = 0.01.into();
            }
        }
    }
    Ok(serde_json::to_string(&request)?)
}

/// bourse's configuration for `bidders` (name, endpoint), each buying `media`.
pub fn bourse_config(bidders: &[(String, String)], media: &[&str], losses: bool) -> String {
    let media = media
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# Generated by bourse-e2e.\n\
         [server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 1000\n\n\
         [log]\nformat = \"json\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nbudget_ms = {BUDGET_MS}\n\
         notice_secret = \"bourse-e2e-benchmark-secret-0123456789abcdef\"\n\n\
         [plugins.exchange.notices]\nlosses = {losses}\n"
    );
    for (name, endpoint) in bidders {
        out.push_str(&format!(
            "\n[[plugins.exchange.bidders]]\nname = {name:?}\nadapter = \"openrtb\"\n\
             endpoint = {endpoint:?}\ntimeout_ms = 150\nmedia = [{media}]\n"
        ));
    }
    out
}

/// The server binaries and the partners, shared by every scenario.
struct Setup<'a> {
    args: &'a RunArgs,
    dir: PathBuf,
    bourse: PathBuf,
    baseline: PathBuf,
    /// `(name, endpoint)`: four bidding partners, then one hanging.
    bidders: Vec<(String, String)>,
    /// The process serving them.
    partners: Child,
    ticks: f64,
}

impl Setup<'_> {
    fn load(&self, secs: u64) -> wrk::Load {
        wrk::Load {
            threads: self.args.threads,
            connections: self.args.connections,
            duration_secs: secs,
        }
    }

    /// Starts bourse for `bidders`; returns it and its auction URL.
    fn start_bourse(
        &self,
        scenario: ScenarioName,
        bidders: &[(String, String)],
        media: &[&str],
    ) -> anyhow::Result<(Child, String)> {
        let config = self.dir.join(format!("bourse-{}.toml", scenario.as_str()));
        std::fs::write(&config, bourse_config(bidders, media, !self.args.no_losses))?;
        let mut child = Child::spawn(
            "bourse",
            Command::new(&self.bourse)
                .arg("serve")
                .arg("--config")
                .arg(&config),
            &self.dir.join(format!("bourse-{}.log", scenario.as_str())),
        )?;
        let base = child.wait_for("bourse is serving on ", Duration::from_secs(20))?;
        Ok((child, format!("{base}/openrtb2/auction")))
    }

    fn start_baseline(
        &self,
        scenario: ScenarioName,
        bidders: &[(String, String)],
    ) -> anyhow::Result<(Child, String)> {
        let mut command = Command::new(&self.baseline);
        command
            .args(["--listen", "127.0.0.1:0", "--timeout-ms"])
            .arg(BIDDER_DEADLINE_MS.to_string());
        for (_, endpoint) in bidders {
            command.arg("--bidder").arg(endpoint);
        }
        let mut child = Child::spawn(
            "baseline",
            &mut command,
            &self.dir.join(format!("baseline-{}.log", scenario.as_str())),
        )?;
        let base = child.wait_for("baseline is serving on ", Duration::from_secs(20))?;
        Ok((child, format!("{base}/")))
    }

    /// Checks the server answers `expect`, then warms it up without measuring.
    fn prepare(
        &self,
        name: &str,
        url: &str,
        body: &str,
        script: &Path,
        expect: u16,
    ) -> anyhow::Result<()> {
        let rest = url.strip_prefix("http://").context("an http URL")?;
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        // A cold first auction (new partner connections on a busy machine) can miss its
        // deadline; a few tries tell that apart from a server that answers wrongly.
        let mut status = 0;
        for _ in 0..5 {
            status = child::probe(addr, path, body.as_bytes())?;
            if status == expect {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if status != expect {
            bail!("{name} answered the probe with {status} five times, expected {expect}");
        }
        if self.args.warmup > 0 {
            wrk::run(url, script, &self.load(self.args.warmup))
                .with_context(|| format!("warming up {name}"))?;
        }
        Ok(())
    }

    fn measure(
        &self,
        scenario: ScenarioName,
        server: &'static str,
        child: &Child,
        url: &str,
        script: &Path,
    ) -> anyhow::Result<Run> {
        // Start from quiet processes: nothing left over from the previous window.
        child.settle(self.ticks, SETTLE_LIMIT)?;
        self.partners.settle(self.ticks, SETTLE_LIMIT)?;
        let before = child.cpu_seconds(self.ticks)?;
        let (summary, _) = wrk::run(url, script, &self.load(self.args.duration))?;
        let load_cpu = child.cpu_seconds(self.ticks)? - before;
        // Work deferred past the window (loss notices) is the server's too: count it.
        let settle = child.settle(self.ticks, SETTLE_LIMIT)?;
        let cpu = child.cpu_seconds(self.ticks)? - before;
        let run = Run {
            scenario,
            server,
            rps: summary.rps(),
            cpu_seconds: cpu,
            deferred_cpu_seconds: cpu - load_cpu,
            settle_ms: settle.as_millis() as u64,
            cpu_us_per_request: cpu / summary.requests.max(1) as f64 * 1e6,
            peak_rss_mib: child.peak_rss_mib()?,
            wrk: summary,
        };
        eprintln!(
            "  {:8} {:>9.0} req/s  p50 {:6.2} ms  p99 {:7.2} ms  cpu {:6.1} µs/req ({:.2} s after the load)  peak {:5.1} MiB  errors {}",
            run.server,
            run.rps,
            run.wrk.p50_us as f64 / 1e3,
            run.wrk.p99_us as f64 / 1e3,
            run.cpu_us_per_request,
            run.deferred_cpu_seconds,
            run.peak_rss_mib,
            run.wrk.errors()
        );
        Ok(run)
    }

    fn scenario(&self, scenario: ScenarioName) -> anyhow::Result<ScenarioResult> {
        let banner = load_body(crate::BANNER_SITE)?;
        let video = load_body(crate::APP_VIDEO)?;
        let all_media = ["banner", "video", "native"];
        let (bidders, media, body, expect, with_baseline): (_, &[&str], _, _, _) = match scenario {
            ScenarioName::FourBidders => (&self.bidders[..4], &all_media, banner, 200, true),
            ScenarioName::OneBidder => (&self.bidders[..1], &all_media, banner, 200, true),
            ScenarioName::NoBid => (&self.bidders[..4], &["banner"], video, 204, false),
            ScenarioName::Hanging => (&self.bidders[1..5], &all_media, banner, 200, true),
        };
        eprintln!("scenario {}:", scenario.as_str());
        let body_path = self.dir.join(format!("body-{}.json", scenario.as_str()));
        std::fs::write(&body_path, &body)?;
        let script = self.dir.join(format!("post-{}.lua", scenario.as_str()));
        std::fs::write(&script, wrk::script(&body_path))?;

        let (bourse, bourse_url) = self.start_bourse(scenario, bidders, media)?;
        self.prepare("bourse", &bourse_url, &body, &script, expect)?;
        let mut runs = vec![self.measure(scenario, "bourse", &bourse, &bourse_url, &script)?];
        if with_baseline {
            let (baseline, baseline_url) = self.start_baseline(scenario, bidders)?;
            self.prepare("baseline", &baseline_url, &body, &script, expect)?;
            for _ in 0..self.args.rounds.max(1) {
                runs.push(self.measure(scenario, "baseline", &baseline, &baseline_url, &script)?);
                runs.push(self.measure(scenario, "bourse", &bourse, &bourse_url, &script)?);
            }
            drop(baseline);
        }
        drop(bourse);
        let mean = |server: &str, f: fn(&Run) -> f64| {
            let values: Vec<f64> = runs.iter().filter(|r| r.server == server).map(f).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let ratio = |f: fn(&Run) -> f64| Some(mean("bourse", f)? / mean("baseline", f)?);
        Ok(ScenarioResult {
            scenario,
            throughput_ratio: ratio(|r| r.rps),
            cpu_ratio: ratio(|r| r.cpu_us_per_request),
            runs,
        })
    }
}

/// A binary beside the running one, or an error saying how to build it.
fn sibling(name: &str, build: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        bail!("{} is missing; build it with `{build}`", path.display())
    }
}

/// Runs the scenarios and returns the results; prints progress to stderr.
pub fn run(args: &RunArgs) -> anyhow::Result<Results> {
    wrk::check_installed()?;
    let bourse = match &args.bourse {
        Some(p) => p.clone(),
        None => sibling("bourse", "cargo build --release -p bourse")?,
    };
    let baseline = match &args.baseline {
        Some(p) => p.clone(),
        None => sibling("baseline", "cargo build --release -p bourse-benches")?,
    };
    let dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("bourse-e2e-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    eprintln!("configs, scripts and logs in {}", dir.display());

    let mut partners = Child::spawn(
        "bidders",
        Command::new(std::env::current_exe()?)
            .args(["bidders", "--count", "4", "--hanging", "1", "--price"])
            .arg(args.price.to_string()),
        &dir.join("bidders.log"),
    )?;
    let mut bidders = Vec::new();
    loop {
        let line = partners.next_line(Duration::from_secs(20))?;
        if line == "ready" {
            break;
        }
        if let Some(rest) = line.strip_prefix("bidder ") {
            let (name, endpoint) = rest.split_once(' ').context("bidder NAME URL")?;
            bidders.push((name.to_owned(), endpoint.to_owned()));
        }
    }
    let setup = Setup {
        args,
        dir,
        bourse,
        baseline,
        bidders,
        partners,
        ticks: child::clock_ticks(),
    };
    let mut scenarios = Vec::new();
    for &scenario in &args.scenarios {
        scenarios.push(
            setup
                .scenario(scenario)
                .with_context(|| format!("scenario {}", scenario.as_str()))?,
        );
    }
    drop(setup);
    Ok(Results {
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        connections: args.connections,
        threads: args.threads,
        duration_secs: args.duration,
        losses: !args.no_losses,
        tmax_ms: TMAX_MS,
        scenarios,
    })
}

/// The results as Markdown tables, ready for `BENCHMARKS.md`.
pub fn markdown(results: &Results) -> String {
    let mut out = format!(
        "wrk closed loop, {} connections, {} threads, {} s per run; {} CPUs shared by load, \
         partners and server; loss notices {}; tmax {} ms. CPU per request is the server's \
         utime+stime from the start of a window until it is idle again (deferred notices \
         included), over the requests wrk completed.\n\n",
        results.connections,
        results.threads,
        results.duration_secs,
        results.cpus,
        if results.losses { "on" } else { "off" },
        results.tmax_ms
    );
    out.push_str(
        "| scenario | server | req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | errors \
         | CPU per request (µs) | peak RSS (MiB) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for scenario in &results.scenarios {
        for (i, run) in scenario.runs.iter().enumerate() {
            let name = if i == 0 {
                scenario.scenario.as_str()
            } else {
                ""
            };
            let ms = |us: u64| us as f64 / 1e3;
            out.push_str(&format!(
                "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} |\n",
                run.server,
                run.rps,
                ms(run.wrk.p50_us),
                ms(run.wrk.p99_us),
                ms(run.wrk.p999_us),
                ms(run.wrk.max_us),
                run.wrk.errors(),
                run.cpu_us_per_request,
                run.peak_rss_mib
            ));
        }
    }
    out.push_str(
        "\n| scenario | bourse / baseline throughput (bar ≥ 0.80) | bourse / baseline CPU per \
         request (bar ≤ 1.5) |\n| --- | --- | --- |\n",
    );
    for scenario in &results.scenarios {
        if let (Some(t), Some(c)) = (scenario.throughput_ratio, scenario.cpu_ratio) {
            out.push_str(&format!(
                "| {} | {t:.2}× | {c:.2}× |\n",
                scenario.scenario.as_str()
            ));
        }
    }
    for scenario in &results.scenarios {
        let bourse: Vec<&Run> = scenario
            .runs
            .iter()
            .filter(|r| r.server == "bourse")
            .collect();
        match scenario.scenario {
            ScenarioName::NoBid => {
                for run in bourse {
                    out.push_str(&format!(
                        "\nno-bid: bourse {:.0} req/s (all 204, no fan-out), {:.1} µs CPU per request.\n",
                        run.rps, run.cpu_us_per_request
                    ));
                }
            }
            ScenarioName::Hanging => {
                let worst = bourse.iter().map(|r| r.wrk.p99_us).max().unwrap_or(0);
                out.push_str(&format!(
                    "\nhanging: bourse p99 {:.1} ms against tmax {} ms (partner deadline {} ms).\n",
                    worst as f64 / 1e3,
                    TMAX_MS,
                    BIDDER_DEADLINE_MS
                ));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_body_lowers_floors_and_sets_second_price() {
        let body: serde_json::Value =
            serde_json::from_str(&load_body(crate::BANNER_SITE).unwrap()).unwrap();
        assert_eq!(body["at"], 2);
        assert_eq!(body["tmax"], TMAX_MS);
        assert_eq!(body["imp"][0]["bidfloor"], 0.01);
        assert_eq!(body["imp"][1]["pmp"]["deals"][0]["bidfloor"], 0.01);
    }

    #[test]
    fn seconds_reads_an_optional_suffix() {
        assert_eq!(seconds("10s"), Ok(10));
        assert_eq!(seconds("3"), Ok(3));
        assert!(seconds("1m").is_err());
    }
}
