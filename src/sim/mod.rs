//! The evidence that scores predict: a simulated population with hidden
//! ground truth, replayed through the real API and scored against it
//! (`reach eval`, `reach simulate`; see docs/evaluation.md).

pub mod bayes;
pub mod breakdown;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod population;
