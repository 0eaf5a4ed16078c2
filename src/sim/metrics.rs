//! Scores of probabilistic predictions against outcomes: Brier score, log
//! loss, expected calibration error over 10 bins and the reliability table.

/// Predictions of one predictor against 0/1 outcomes.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    n: u64,
    brier: f64,
    log_loss: f64,
    /// Per bin of predicted probability: count, sum of predictions, sum of outcomes.
    bins: [(u64, f64, f64); 10],
}

/// Predictions are clipped this far from 0 and 1 for the log loss, so that
/// one confident miss of a 0/1 predictor is costly but finite.
const CLIP: f64 = 1e-3;

impl Calibration {
    pub fn add(&mut self, p: f64, outcome: bool) {
        let y = if outcome { 1.0 } else { 0.0 };
        let p = p.clamp(0.0, 1.0);
        self.n += 1;
        self.brier += (p - y) * (p - y);
        let q = p.clamp(CLIP, 1.0 - CLIP);
        self.log_loss -= if outcome { q.ln() } else { (1.0 - q).ln() };
        let bin = ((p * 10.0) as usize).min(9);
        let b = &mut self.bins[bin];
        b.0 += 1;
        b.1 += p;
        b.2 += y;
    }

    pub fn merge(&mut self, other: &Calibration) {
        self.n += other.n;
        self.brier += other.brier;
        self.log_loss += other.log_loss;
        for (a, b) in self.bins.iter_mut().zip(other.bins) {
            a.0 += b.0;
            a.1 += b.1;
            a.2 += b.2;
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn brier(&self) -> f64 {
        self.brier / self.n.max(1) as f64
    }

    pub fn log_loss(&self) -> f64 {
        self.log_loss / self.n.max(1) as f64
    }

    /// Expected calibration error: the count-weighted mean gap between the
    /// mean prediction and the observed rate of each bin.
    pub fn ece(&self) -> f64 {
        let n = self.n.max(1) as f64;
        self.bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(count, sum_p, sum_y)| {
                let c = count as f64;
                (sum_p / c - sum_y / c).abs() * c / n
            })
            .sum()
    }

    /// (bin lower edge, count, mean prediction, observed rate) per non-empty bin.
    pub fn reliability(&self) -> Vec<(f64, u64, f64, f64)> {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, &(count, sum_p, sum_y))| {
                let c = count as f64;
                (i as f64 / 10.0, count, sum_p / c, sum_y / c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibrated_predictor_has_no_calibration_error() {
        let mut c = Calibration::default();
        for i in 0..1000 {
            c.add(0.25, i % 4 == 0);
        }
        assert!(c.ece() < 1e-12);
        assert!(
            (c.brier() - 0.1875).abs() < 1e-12,
            "p(1-p) for a calibrated constant"
        );
        let mut wrong = Calibration::default();
        for i in 0..1000 {
            wrong.add(0.95, i % 4 == 0);
        }
        assert!((wrong.ece() - 0.70).abs() < 1e-9);
        assert!(wrong.brier() > c.brier() && wrong.log_loss() > c.log_loss());
        assert_eq!(c.reliability(), vec![(0.2, 1000, 0.25, 0.25)]);
    }
}
