//! The revenue ledger: every billed impression, with totals per hour and per day that reconcile
//! exactly with the billing events (amounts are integer micro-units, never floats).

use crate::pricing::net_of_fee;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// One billed impression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// When it was billed, Unix seconds.
    pub ts: u64,
    /// Our auction (bid request) id.
    pub auction: String,
    /// Impression id within the auction.
    pub imp: String,
    /// Publisher id from config.
    pub publisher: String,
    /// Placement id from config.
    pub placement: String,
    /// Bidder name from config.
    pub bidder: String,
    /// Deal id, when the bid was for a deal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deal: Option<String>,
    /// Currency of the amounts.
    pub currency: String,
    /// What the buyer pays for this impression, in millionths of the currency unit.
    pub gross_micros: u64,
    /// Our fee, same unit.
    pub fee_micros: u64,
    /// Net to the publisher: `gross_micros - fee_micros`, exactly.
    pub net_micros: u64,
}

impl LedgerEntry {
    /// Splits a clearing price (CPM, in `currency`) into gross, fee and net micro-units for one
    /// impression. The net is rounded from the net price ([`net_of_fee`]), so a price whose net
    /// met a seller's floor books a net that meets that floor in micro-units too (rounding is
    /// monotone); the fee is what is left, so the three always add up.
    pub fn amounts(cpm: f64, fee: f64) -> (u64, u64, u64) {
        // A CPM is per thousand impressions: one impression is cpm / 1000 units = cpm * 1000 micros.
        fn micros(cpm: f64) -> u64 {
            let micros = (cpm * 1000.0).round();
            if micros.is_finite() && micros > 0.0 {
                micros as u64
            } else {
                0
            }
        }
        let net = micros(net_of_fee(cpm, fee.clamp(0.0, 1.0)));
        let gross = micros(cpm).max(net);
        (gross, gross - net, net)
    }
}

/// Sums over a period for one publisher, placement and bidder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Billed impressions.
    pub impressions: u64,
    /// Sum of `gross_micros`.
    pub gross_micros: u64,
    /// Sum of `fee_micros`.
    pub fee_micros: u64,
    /// Sum of `net_micros`.
    pub net_micros: u64,
}

impl Totals {
    fn add(&mut self, entry: &LedgerEntry) {
        self.impressions += 1;
        self.gross_micros += entry.gross_micros;
        self.fee_micros += entry.fee_micros;
        self.net_micros += entry.net_micros;
    }
}

/// A period's totals, broken down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeriodReport {
    /// `YYYY-MM-DDTHH` for an hour, `YYYY-MM-DD` for a day (UTC).
    pub period: String,
    /// Everything in the period.
    pub total: Totals,
    /// By publisher, placement and bidder.
    pub rows: Vec<ReportRow>,
}

/// One breakdown line of a [`PeriodReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// Publisher id.
    pub publisher: String,
    /// Placement id.
    pub placement: String,
    /// Bidder name.
    pub bidder: String,
    /// Its totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Which totals to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The UTC hour holding this Unix time.
    Hour(u64),
    /// The UTC day holding this Unix time.
    Day(u64),
}

enum Message {
    Record(Box<LedgerEntry>),
    Report(Period, oneshot::Sender<PeriodReport>),
    Flush(oneshot::Sender<()>),
    Reopen(Option<PathBuf>),
}

/// Hours and days kept in memory; older totals live on only in the ledger file.
const HOURS_KEPT: usize = 72;
const DAYS_KEPT: usize = 62;

/// Handle to the ledger task. Recording never blocks and never drops: a billing event is
/// worth more than the memory of an unbounded queue, and billing events are rare next to
/// auctions.
#[derive(Debug, Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Message>,
}

type Key = (String, String, String);

struct Book {
    hours: BTreeMap<u64, BTreeMap<Key, Totals>>,
    days: BTreeMap<u64, BTreeMap<Key, Totals>>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    path: Option<PathBuf>,
}

impl Book {
    fn record(&mut self, entry: &LedgerEntry) {
        let key = (
            entry.publisher.clone(),
            entry.placement.clone(),
            entry.bidder.clone(),
        );
        for (map, bucket, kept) in [
            (&mut self.hours, entry.ts / 3600, HOURS_KEPT),
            (&mut self.days, entry.ts / 86_400, DAYS_KEPT),
        ] {
            map.entry(bucket)
                .or_default()
                .entry(key.clone())
                .or_default()
                .add(entry);
            while map.len() > kept {
                map.pop_first();
            }
        }
        if let Some(file) = &mut self.file {
            let written = serde_json::to_writer(&mut *file, entry)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if let Err(error) = written {
                tracing::error!(path = ?self.path, %error, "cannot append to the revenue ledger");
            }
        }
    }

    fn report(&self, period: Period) -> PeriodReport {
        let (map, bucket, label) = match period {
            Period::Hour(ts) => (&self.hours, ts / 3600, hour_label(ts)),
            Period::Day(ts) => (&self.days, ts / 86_400, day_label(ts)),
        };
        let mut report = PeriodReport {
            period: label,
            ..PeriodReport::default()
        };
        if let Some(rows) = map.get(&bucket) {
            for ((publisher, placement, bidder), totals) in rows {
                report.total.impressions += totals.impressions;
                report.total.gross_micros += totals.gross_micros;
                report.total.fee_micros += totals.fee_micros;
                report.total.net_micros += totals.net_micros;
                report.rows.push(ReportRow {
                    publisher: publisher.clone(),
                    placement: placement.clone(),
                    bidder: bidder.clone(),
                    totals: totals.clone(),
                });
            }
        }
        report
    }

    /// Writes from now on to `path` (or to no file), after flushing the current one.
    fn reopen(&mut self, path: Option<PathBuf>) {
        if path == self.path {
            return;
        }
        self.flush();
        self.file = match &path {
            Some(path) => match open_append(path) {
                Ok(file) => Some(file),
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot open the revenue ledger file; entries are kept in memory only");
                    None
                }
            },
            None => None,
        };
        self.path = path;
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.file
            && let Err(error) = file.flush()
        {
            tracing::error!(path = ?self.path, %error, "cannot flush the revenue ledger");
        }
    }
}

impl Ledger {
    /// Starts the ledger task (inside a tokio runtime). With a path, every entry is also
    /// appended to that file as one JSON line.
    pub fn start(path: Option<PathBuf>) -> std::io::Result<Ledger> {
        let file = match &path {
            Some(path) => Some(open_append(path)?),
            None => None,
        };
        let mut book = Book {
            hours: BTreeMap::new(),
            days: BTreeMap::new(),
            file,
            path,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    message = rx.recv() => match message {
                        Some(Message::Record(entry)) => book.record(&entry),
                        Some(Message::Report(period, reply)) => {
                            let _ = reply.send(book.report(period));
                        }
                        Some(Message::Flush(reply)) => {
                            book.flush();
                            let _ = reply.send(());
                        }
                        Some(Message::Reopen(path)) => book.reopen(path),
                        None => break,
                    },
                    _ = flush.tick() => book.flush(),
                }
            }
            book.flush();
        });
        Ok(Ledger { tx })
    }

    /// Records one billed impression.
    pub fn record(&self, entry: LedgerEntry) {
        if self.tx.send(Message::Record(Box::new(entry))).is_err() {
            tracing::error!("the revenue ledger task has stopped; an entry was not recorded");
        }
    }

    /// Totals for an hour or a day.
    pub async fn report(&self, period: Period) -> PeriodReport {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Report(period, reply)).is_err() {
            return PeriodReport::default();
        }
        answer.await.unwrap_or_default()
    }

    /// Appends the entries recorded from now on to `path` instead (or to no file); what was
    /// recorded before stays where it was written. Never blocks.
    pub fn reopen(&self, path: Option<PathBuf>) {
        if self.tx.send(Message::Reopen(path)).is_err() {
            tracing::error!("the revenue ledger task has stopped; the new ledger path is not used");
        }
    }

    /// Waits until everything recorded so far is counted and written.
    pub async fn flush(&self) {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Flush(reply)).is_ok() {
            let _ = answer.await;
        }
    }
}

/// Opens (creating it) a ledger file for appending.
pub fn open_append(path: &std::path::Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(std::io::BufWriter::new)
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn day_label(ts: u64) -> String {
    let (y, m, d) = bourse_kernel::civil_from_days((ts / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH` (UTC) of a Unix time.
pub fn hour_label(ts: u64) -> String {
    format!("{}T{:02}", day_label(ts), (ts % 86_400) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: u64, placement: &str, cpm: f64) -> LedgerEntry {
        let (gross, fee, net) = LedgerEntry::amounts(cpm, 0.15);
        LedgerEntry {
            ts,
            auction: format!("a{ts}"),
            imp: "1".into(),
            publisher: "news".into(),
            placement: placement.into(),
            bidder: "dsp".into(),
            deal: None,
            currency: "USD".into(),
            gross_micros: gross,
            fee_micros: fee,
            net_micros: net,
        }
    }

    #[test]
    fn amounts_always_add_up() {
        for cpm in [0.0, 0.0001, 0.3333, 1.0, 2.675, 17.129, 999.99] {
            for fee in [0.0, 0.1, 0.15, 0.333, 0.999] {
                let (gross, fee_micros, net) = LedgerEntry::amounts(cpm, fee);
                assert_eq!(gross, fee_micros + net, "cpm {cpm} fee {fee}");
            }
        }
        assert_eq!(LedgerEntry::amounts(2.5, 0.2), (2500, 500, 2000));
        assert_eq!(LedgerEntry::amounts(f64::NAN, 0.2), (0, 0, 0));
        assert_eq!(LedgerEntry::amounts(-1.0, 0.2), (0, 0, 0));
    }

    #[test]
    fn labels_are_utc_calendar_dates() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(hour_label(1_796_189_000), "2026-12-02T05");
        assert_eq!(day_label(951_782_400), "2000-02-29");
    }

    #[tokio::test]
    async fn totals_reconcile_with_entries_and_the_file() {
        let dir = std::env::temp_dir().join(format!("bourse-ledger-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        let ledger = Ledger::start(Some(path.clone())).unwrap();
        let base = 1_796_180_400; // 2026-12-02T03:00:00Z
        let entries = [
            entry(base, "top", 1.234),
            entry(base + 10, "top", 2.0),
            entry(base + 20, "side", 0.5),
            entry(base + 3600, "top", 3.3),
        ];
        for e in &entries {
            ledger.record(e.clone());
        }
        ledger.flush().await;
        let hour = ledger.report(Period::Hour(base)).await;
        assert_eq!(hour.period, "2026-12-02T03");
        assert_eq!(hour.total.impressions, 3);
        let day = ledger.report(Period::Day(base)).await;
        assert_eq!(day.total.impressions, 4);
        let sum = |f: fn(&LedgerEntry) -> u64| entries.iter().map(f).sum::<u64>();
        assert_eq!(day.total.gross_micros, sum(|e| e.gross_micros));
        assert_eq!(day.total.fee_micros, sum(|e| e.fee_micros));
        assert_eq!(day.total.net_micros, sum(|e| e.net_micros));
        assert_eq!(
            day.total.gross_micros,
            day.total.fee_micros + day.total.net_micros
        );
        let top = day.rows.iter().find(|r| r.placement == "top").unwrap();
        assert_eq!(top.totals.impressions, 3);
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 4);
        assert!(lines.contains("\"placement\":\"side\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
