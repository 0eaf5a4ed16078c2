//! Where the Brier score is lost: the decisions split by what the sender had
//! seen of the channel and by what the channel truly was, each with reach's,
//! the campaign average's and the oracle's score on the same messages. The
//! gap between reach and the oracle in a row is what a better model could
//! still take back there; the row's share of all decisions says how much it
//! weighs in the total.

use crate::sim::metrics::Calibration;

/// reach, the campaign average and the oracle on one set of decisions.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub model: Calibration,
    pub average: Calibration,
    pub bayes: Calibration,
    pub oracle: Calibration,
}

impl Row {
    fn merge(&mut self, o: &Row) {
        self.model.merge(&o.model);
        self.average.merge(&o.average);
        self.bayes.merge(&o.bayes);
        self.oracle.merge(&o.oracle);
    }
}

/// What the sender had seen of the channel before the message.
pub const HISTORY: [&str; 4] = [
    "first message on the channel",
    "1 earlier outcome",
    "2 or 3 earlier outcomes",
    "4 or more earlier outcomes",
];

/// What the channel truly was when the message went out.
pub const TRUTH: [&str; 4] = [
    "working address",
    "address that barely works (p < 0.5)",
    "dead address, no failure seen since it died",
    "dead address, a failure already seen",
];

/// The truth of a channel at a decision, as an index into [`TRUTH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    Working,
    Bad,
    DeadUnseen,
    DeadSeen,
}

#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    pub by_history: [Row; 4],
    pub by_truth: [Row; 4],
}

/// One scored decision.
pub struct Decision {
    pub earlier_outcomes: u32,
    pub truth: Truth,
    pub model: f64,
    pub average: f64,
    pub bayes: f64,
    pub oracle: f64,
    pub delivered: bool,
}

impl Breakdown {
    pub fn add(&mut self, d: &Decision) {
        let history = match d.earlier_outcomes {
            0 => 0,
            1 => 1,
            2 | 3 => 2,
            _ => 3,
        };
        for row in [
            &mut self.by_history[history],
            &mut self.by_truth[d.truth as usize],
        ] {
            row.model.add(d.model, d.delivered);
            row.average.add(d.average, d.delivered);
            row.bayes.add(d.bayes, d.delivered);
            row.oracle.add(d.oracle, d.delivered);
        }
    }

    pub fn merge(&mut self, o: &Breakdown) {
        for (a, b) in self.by_history.iter_mut().zip(&o.by_history) {
            a.merge(b);
        }
        for (a, b) in self.by_truth.iter_mut().zip(&o.by_truth) {
            a.merge(b);
        }
    }

    /// The two tables in markdown. Each row's "share of reach's Brier" is its
    /// summed squared error over the total: where the score is lost.
    pub fn render(&self) -> String {
        let total: f64 = self.by_history.iter().map(squared_error).sum();
        let mut out = String::new();
        for (title, names, rows) in [
            (
                "what the sender had seen of the channel",
                &HISTORY,
                &self.by_history,
            ),
            ("what the channel truly was", &TRUTH, &self.by_truth),
        ] {
            out += &format!(
                "Brier score by {title}:\n\n| decisions | share | reach | campaign average | Bayes reference | oracle | share of reach's Brier |\n|---|---:|---:|---:|---:|---:|---:|\n"
            );
            let n: u64 = rows.iter().map(|r| r.model.count()).sum();
            for (name, row) in names.iter().zip(rows.iter()) {
                out += &format!(
                    "| {name} | {:.1}% | {:.4} | {:.4} | {:.4} | {:.4} | {:.1}% |\n",
                    percent(row.model.count() as f64, n as f64),
                    row.model.brier(),
                    row.average.brier(),
                    row.bayes.brier(),
                    row.oracle.brier(),
                    percent(squared_error(row), total),
                );
            }
            out += "\n";
        }
        out
    }
}

fn squared_error(row: &Row) -> f64 {
    row.model.brier() * row.model.count() as f64
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_the_decisions_and_their_error() {
        let mut b = Breakdown::default();
        let decision = |earlier_outcomes, truth, model| Decision {
            earlier_outcomes,
            truth,
            model,
            average: 0.9,
            bayes: 0.8,
            oracle: 0.95,
            delivered: true,
        };
        b.add(&decision(0, Truth::Working, 0.5));
        b.add(&decision(5, Truth::DeadSeen, 1.0));
        assert_eq!(b.by_history[0].model.count(), 1);
        assert_eq!(b.by_history[3].model.count(), 1);
        assert_eq!(b.by_truth[Truth::DeadSeen as usize].model.count(), 1);
        assert!((b.by_history[0].model.brier() - 0.25).abs() < 1e-12);
        let report = b.render();
        // All the error is in the first message's row.
        assert!(report.contains("| first message on the channel | 50.0% | 0.2500 | 0.0100 | 0.0400 | 0.0025 | 100.0% |"), "{report}");
    }
}
