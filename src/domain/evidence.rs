//! Exponentially decayed evidence sums that do not depend on arrival order.
//!
//! Each sum is kept as of `anchor`, the latest event time seen. An event at
//! `t <= anchor` adds `2^-((anchor - t) / half_life)`; an event after the anchor
//! first rescales the sums to its own time. Either way the result is
//! `sum_i 2^-((anchor - t_i) / half_life)` whatever the order, so state stays
//! constant-size however long the history is.

use crate::domain::Millis;

/// The kinds of evidence a channel accumulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Delivered,
    HardFail,
    SoftFail,
    Unconfirmed,
    Engaged,
}

/// Decayed sums per kind, as of `anchor`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    pub anchor: Option<Millis>,
    pub delivered: f64,
    pub hard_fails: f64,
    pub soft_fails: f64,
    pub unconfirmed: f64,
    pub engaged: f64,
}

/// `2^(-dt / half_life)`, with the exponent clamped so that absurd time gaps
/// give tiny or huge but finite factors rather than 0 * inf.
pub fn decay(dt_ms: f64, half_life_ms: f64) -> f64 {
    (-dt_ms / half_life_ms).clamp(-1000.0, 1000.0).exp2()
}

impl Evidence {
    pub fn add(&mut self, kind: Kind, at: Millis, half_life_ms: f64) {
        let weight = match self.anchor {
            Some(anchor) if at <= anchor => decay((anchor.0 - at.0) as f64, half_life_ms),
            Some(anchor) => {
                self.scale(decay((at.0 - anchor.0) as f64, half_life_ms));
                self.anchor = Some(at);
                1.0
            }
            None => {
                self.anchor = Some(at);
                1.0
            }
        };
        *self.slot(kind) += weight;
    }

    /// Withdraws one event of `kind` at `at` added before (a correction,
    /// e.g. an UNCONFIRMED replaced by the receipt that arrived late).
    pub fn remove(&mut self, kind: Kind, at: Millis, half_life_ms: f64) {
        let Some(anchor) = self.anchor else { return };
        let weight = decay((anchor.0 - at.0) as f64, half_life_ms);
        let slot = self.slot(kind);
        // Floating point leaves dust where the event was: clamp it away.
        *slot = (*slot - weight).max(0.0);
        if *slot < 1e-12 {
            *slot = 0.0;
        }
    }

    /// The sums as seen at `now`. Events after `now` weigh more than 1; callers
    /// evaluate at or after the events they want counted.
    pub fn at(&self, now: Millis, half_life_ms: f64) -> Evidence {
        let Some(anchor) = self.anchor else {
            return Evidence::default();
        };
        let mut seen = self.clone();
        seen.scale(decay((now.0 - anchor.0) as f64, half_life_ms));
        seen.anchor = Some(now);
        seen
    }

    fn scale(&mut self, factor: f64) {
        self.delivered *= factor;
        self.hard_fails *= factor;
        self.soft_fails *= factor;
        self.unconfirmed *= factor;
        self.engaged *= factor;
    }

    fn slot(&mut self, kind: Kind) -> &mut f64 {
        match kind {
            Kind::Delivered => &mut self.delivered,
            Kind::HardFail => &mut self.hard_fails,
            Kind::SoftFail => &mut self.soft_fails,
            Kind::Unconfirmed => &mut self.unconfirmed,
            Kind::Engaged => &mut self.engaged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const HALF_LIFE: f64 = 30.0 * DAY as f64;

    #[test]
    fn halves_every_half_life() {
        let mut e = Evidence::default();
        e.add(Kind::Delivered, Millis(0), HALF_LIFE);
        assert!((e.at(Millis(30 * DAY), HALF_LIFE).delivered - 0.5).abs() < 1e-12);
        assert!((e.at(Millis(60 * DAY), HALF_LIFE).delivered - 0.25).abs() < 1e-12);
    }

    #[test]
    fn order_does_not_matter() {
        let times = [5 * DAY, 0, 40 * DAY, 3 * DAY, 39 * DAY];
        let mut forward = Evidence::default();
        let mut backward = Evidence::default();
        for &t in &times {
            forward.add(Kind::HardFail, Millis(t), HALF_LIFE);
        }
        for &t in times.iter().rev() {
            backward.add(Kind::HardFail, Millis(t), HALF_LIFE);
        }
        let now = Millis(50 * DAY);
        let a = forward.at(now, HALF_LIFE).hard_fails;
        let b = backward.at(now, HALF_LIFE).hard_fails;
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}
