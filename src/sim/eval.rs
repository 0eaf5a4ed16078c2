//! `reach eval`: replays a simulated population through a real `reach
//! serve` over gRPC and scores its predictions against the hidden truth.
//!
//! The population moves forward an hour at a time: many workers replay
//! their contacts to the hour's end, each contact in its own time order (before
//! each message, every event the sender would have seen by then is
//! recorded, then `GetBestChannel` evaluated `as_of` the send time gives the
//! score of the message's channel and the channel reach would choose; only
//! then is the message's true outcome used). A contact's own scores depend on
//! its own events only, but the route outlook reads everyone's outcomes of
//! the hours before: moving together, every decision sees the whole
//! population's past, as a live sender's would, and the figures do not
//! depend on the order the workers ran in.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use anyhow::Context;
use tonic::transport::Channel as Transport;

use crate::{
    bench::child::ServerProcess,
    domain::{Channel, Millis, Status},
    grpc::timestamp,
    proto::{self, reachability_service_client::ReachabilityServiceClient},
    sim::{
        bayes::{BayesReference, Outcome, SeenOutcome},
        breakdown::{Breakdown, Decision, Truth},
        metrics::Calibration,
        population::{Message, Observed, Scenario, SimContact, contact},
    },
};

type Client = ReachabilityServiceClient<Transport>;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    pub contacts: u64,
    pub seed: u64,
    pub messages_per_contact: f64,
    pub effects: crate::sim::population::Effects,
    pub workers: usize,
    /// A reach config file for the server (model parameters to try).
    pub config: Option<PathBuf>,
    pub work_dir: PathBuf,
}

/// What the predictions are compared with, beside the oracle.
struct Baselines {
    average: CampaignAverage,
    bayes: BayesReference,
}

/// The campaign-wide average a team would use: the delivery rate per
/// channel over every outcome observed before the day of the message.
struct CampaignAverage {
    /// Per channel, cumulative (delivered, outcomes) at the start of each day.
    cumulative: [Vec<(u64, u64)>; 4],
}

impl CampaignAverage {
    fn build(s: &Scenario) -> Self {
        let days = s.days as usize + 2;
        let mut daily = [(); 4].map(|_| vec![(0u64, 0u64); days]);
        for i in 0..s.contacts {
            for e in contact(s, i).events {
                let Some(delivered) = final_outcome(e.status) else {
                    continue;
                };
                let day = ((e.at.0 - s.start().0) / DAY).clamp(0, days as i64 - 1) as usize;
                let cell = &mut daily[e.channel.index()][day];
                cell.0 += u64::from(delivered);
                cell.1 += 1;
            }
        }
        let cumulative = daily.map(|d| {
            let mut sum = (0, 0);
            d.into_iter()
                .map(|(a, b)| {
                    let before = sum;
                    sum = (sum.0 + a, sum.1 + b);
                    before
                })
                .collect()
        });
        CampaignAverage { cumulative }
    }

    fn rate(&self, channel: Channel, at: Millis, s: &Scenario) -> f64 {
        let cells = &self.cumulative[channel.index()];
        let day = ((at.0 - s.start().0) / DAY).clamp(0, cells.len() as i64 - 1) as usize;
        let (delivered, outcomes) = cells[day];
        if outcomes == 0 {
            0.9
        } else {
            delivered as f64 / outcomes as f64
        }
    }
}

/// Delivered (true) or failed (false) for outcomes a sender observes; `None`
/// for everything else (opt-ins, engagement, compliance blocks).
fn final_outcome(status: Status) -> Option<bool> {
    match status {
        Status::Delivered => Some(true),
        Status::BouncedHard | Status::PendingRetry | Status::Unconfirmed => Some(false),
        _ => None,
    }
}

/// The figures of one predictor.
#[derive(Clone, Debug, Default)]
pub struct Predictor {
    pub calibration: Calibration,
    /// Sum of the true delivery probability of the channel it would choose.
    pub chosen_p: f64,
}

impl Predictor {
    fn merge(&mut self, other: &Predictor) {
        self.calibration.merge(&other.calibration);
        self.chosen_p += other.chosen_p;
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub model: Predictor,
    pub campaign_average: Predictor,
    pub last_status: Predictor,
    /// The posterior predictive under the world's own rules: the best any
    /// model could do with the same evidence (src/sim/bayes.rs).
    pub bayes: Predictor,
    /// The true probabilities as predictions: the floor no model can beat.
    pub oracle: Predictor,
    pub oracle_p: f64,
    pub decisions: u64,
    /// Times reach chose a channel the contact had opted out of (must be 0).
    pub opted_out_choices: u64,
    /// Times reach found no eligible channel while one was usable.
    pub no_channel: u64,
    pub events: u64,
    pub seconds: f64,
    /// Where the Brier score is lost.
    pub breakdown: Breakdown,
}

impl Figures {
    fn merge(&mut self, o: &Figures) {
        self.model.merge(&o.model);
        self.campaign_average.merge(&o.campaign_average);
        self.last_status.merge(&o.last_status);
        self.bayes.merge(&o.bayes);
        self.oracle.merge(&o.oracle);
        self.oracle_p += o.oracle_p;
        self.decisions += o.decisions;
        self.opted_out_choices += o.opted_out_choices;
        self.no_channel += o.no_channel;
        self.events += o.events;
        self.breakdown.merge(&o.breakdown);
    }

    pub fn hit_rate(&self, p: &Predictor) -> f64 {
        p.chosen_p / self.decisions.max(1) as f64
    }

    pub fn oracle_rate(&self) -> f64 {
        self.oracle_p / self.decisions.max(1) as f64
    }
}

/// Runs the evaluation against a fresh `reach serve`.
pub async fn run(spec: &EvalSpec) -> anyhow::Result<Figures> {
    let started = std::time::Instant::now();
    // The period ends a day ago: every event is in the past for the API.
    let end = Millis((Millis::now().0 / DAY - 1) * DAY);
    let mut scenario = Scenario::new(spec.contacts, spec.seed, end);
    scenario.messages_per_contact = spec.messages_per_contact;
    scenario.effects = spec.effects;
    let scenario = Arc::new(scenario);
    let baselines = Arc::new(Baselines {
        average: CampaignAverage::build(&scenario),
        bayes: BayesReference::new(),
    });
    let data_dir = spec
        .work_dir
        .join(format!("eval-{}-{}", spec.contacts, spec.seed));
    let _ = std::fs::remove_dir_all(&data_dir);
    // Route day cells are kept against the wall clock; the replay asks as
    // of the whole simulated period, so they must reach back that far.
    let history = format!("{}d", scenario.days + 30);
    let server = ServerProcess::reach_with(
        &data_dir,
        spec.config.as_deref(),
        &[("REACH_ROUTE_HEALTH__OUTLOOK_HISTORY", &history)],
    )
    .await?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))?;
    let workers = spec.workers.max(1);
    let mut shards = Vec::new();
    for w in 0..workers {
        let contacts: Vec<Replay> = (w as u64..scenario.contacts)
            .step_by(workers)
            .map(|i| Replay::new(contact(&scenario, i)))
            .collect();
        let client = Client::new(endpoint.connect().await.context("connecting")?);
        shards.push((contacts, client, Figures::default()));
    }
    let mut control = Client::new(endpoint.connect().await.context("connecting")?);
    // Hour by hour, every contact up to the hour's end, then the statistics
    // flushed (GetRouteHealth flushes): a decision in hour h sees all of the
    // population's outcomes before h (the outlook reads no later hour), as
    // a live sender's would, whatever the order the workers ran in.
    for hour in 1..=(scenario.days + 1) * 24 {
        let until = Millis(scenario.start().0 + hour * HOUR);
        let mut tasks = Vec::new();
        for (mut contacts, mut client, mut figures) in shards {
            let (scenario, baselines) = (scenario.clone(), baselines.clone());
            tasks.push(tokio::spawn(async move {
                for r in &mut contacts {
                    r.advance(until, &mut client, &scenario, &baselines, &mut figures)
                        .await?;
                }
                anyhow::Ok((contacts, client, figures))
            }));
        }
        shards = Vec::new();
        for task in tasks {
            shards.push(task.await??);
        }
        control
            .get_route_health(proto::GetRouteHealthRequest::default())
            .await
            .context("GetRouteHealth")?;
    }
    let mut figures = Figures::default();
    for (_, _, f) in &shards {
        figures.merge(f);
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&data_dir);
    figures.seconds = started.elapsed().as_secs_f64();
    Ok(figures)
}

/// One contact's replay so far.
struct Replay {
    c: SimContact,
    seen: Seen,
    next_message: usize,
}

/// The events recorded so far, and per channel: the last outcome among
/// them (for the "last status wins" baseline), how many there were and when
/// the last failed message was sent (for the breakdown).
#[derive(Default)]
struct Seen {
    next_event: usize,
    last: HashMap<Channel, bool>,
    outcomes: HashMap<Channel, u32>,
    last_failure_sent: HashMap<Channel, Millis>,
    /// The outcomes seen, in the order their messages were sent (for the
    /// Bayes reference).
    history: HashMap<Channel, Vec<SeenOutcome>>,
}

impl Seen {
    /// Records the contact's events before `until` not yet recorded.
    async fn record_until(
        &mut self,
        until: Millis,
        client: &mut Client,
        c: &SimContact,
        f: &mut Figures,
    ) -> anyhow::Result<()> {
        while self.next_event < c.events.len() && c.events[self.next_event].at < until {
            let e = &c.events[self.next_event];
            record(client, c, e, self.next_event).await?;
            if let Some(delivered) = final_outcome(e.status) {
                self.last.insert(e.channel, delivered);
                *self.outcomes.entry(e.channel).or_default() += 1;
                let sent = e.sent_at.unwrap_or(e.at);
                if !delivered {
                    self.last_failure_sent.insert(e.channel, sent);
                }
                if let Some(outcome) = bayes_outcome(e.status) {
                    let history = self.history.entry(e.channel).or_default();
                    let at = history.partition_point(|o| o.sent <= sent);
                    history.insert(at, SeenOutcome { sent, outcome });
                }
            }
            f.events += 1;
            self.next_event += 1;
        }
        Ok(())
    }
}

impl Replay {
    fn new(c: SimContact) -> Self {
        Replay {
            c,
            seen: Seen::default(),
            next_message: 0,
        }
    }

    /// Replays the contact up to `until`: before each message, the events
    /// the sender has seen by then, then the decision; then the rest of the
    /// events before `until`.
    async fn advance(
        &mut self,
        until: Millis,
        client: &mut Client,
        s: &Scenario,
        baselines: &Baselines,
        f: &mut Figures,
    ) -> anyhow::Result<()> {
        let c = &self.c;
        while let Some(m) = c.messages.get(self.next_message).filter(|m| m.at < until) {
            self.seen.record_until(m.at, client, c, f).await?;
            self.next_message += 1;
            if !m.blocked {
                // Else the sender's registration, not the contact: not a prediction.
                decide(client, c, m, &self.seen, s, baselines, f).await?;
            }
        }
        self.seen.record_until(until, client, c, f).await
    }
}

/// Asks reach about message `m` and scores every predictor against it.
async fn decide(
    client: &mut Client,
    c: &SimContact,
    m: &Message,
    seen: &Seen,
    s: &Scenario,
    baselines: &Baselines,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let channels: Vec<Channel> = c.channels.iter().map(|t| t.channel).collect();
    let best = client
        .get_best_channel(proto::GetBestChannelRequest {
            contact_id: c.id.clone(),
            allowed_channels: channels
                .iter()
                .map(|&ch| proto_channel(ch) as i32)
                .collect(),
            as_of: Some(timestamp(m.at)),
            ..Default::default()
        })
        .await
        .context("GetBestChannel")?
        .into_inner();
    let model_p = best
        .ranked
        .iter()
        .find(|r| r.channel == proto_channel(m.channel) as i32)
        .map_or(0.0, |r| r.score);
    let avg = |ch: Channel| baselines.average.rate(ch, m.at, s);
    let no_history = Vec::new();
    let bayes = |ch: Channel| {
        let history = seen.history.get(&ch).unwrap_or(&no_history);
        baselines.bayes.predict(c, ch, history, m.at, s)
    };
    let last_status = |ch: Channel| match seen.last.get(&ch) {
        Some(true) => 1.0,
        Some(false) => 0.0,
        None => avg(ch),
    };
    f.model.calibration.add(model_p, m.delivered);
    f.campaign_average
        .calibration
        .add(avg(m.channel), m.delivered);
    f.last_status
        .calibration
        .add(last_status(m.channel), m.delivered);
    f.bayes.calibration.add(bayes(m.channel), m.delivered);
    f.oracle
        .calibration
        .add(c.true_p(m.channel, m.at, s), m.delivered);
    f.breakdown.add(&Decision {
        earlier_outcomes: seen.outcomes.get(&m.channel).copied().unwrap_or(0),
        truth: truth_at(c, m, seen),
        model: model_p,
        average: avg(m.channel),
        bayes: bayes(m.channel),
        oracle: c.true_p(m.channel, m.at, s),
        delivered: m.delivered,
    });

    // Best channel: what each would choose among the usable channels,
    // worth the chosen channel's true delivery probability.
    let usable: Vec<Channel> = channels
        .iter()
        .copied()
        .filter(|&ch| !c.opted_out(ch, m.at))
        .collect();
    let truth = |ch: Channel| c.true_p(ch, m.at, s);
    f.decisions += 1;
    f.oracle_p += usable.iter().map(|&ch| truth(ch)).fold(0.0, f64::max);
    match from_proto(best.channel) {
        Some(ch) if usable.contains(&ch) => f.model.chosen_p += truth(ch),
        Some(_) => f.opted_out_choices += 1,
        None if !usable.is_empty() => f.no_channel += 1,
        None => {}
    }
    let argmax = |score: &dyn Fn(Channel) -> f64| {
        usable
            .iter()
            .copied()
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
    };
    if let Some(ch) = argmax(&avg) {
        f.campaign_average.chosen_p += truth(ch);
    }
    if let Some(ch) = argmax(&last_status) {
        f.last_status.chosen_p += truth(ch);
    }
    if let Some(ch) = argmax(&bayes) {
        f.bayes.chosen_p += truth(ch);
    }
    Ok(())
}

fn bayes_outcome(status: Status) -> Option<Outcome> {
    match status {
        Status::Delivered => Some(Outcome::Delivered),
        Status::PendingRetry => Some(Outcome::Soft),
        Status::Unconfirmed => Some(Outcome::Unconfirmed),
        Status::BouncedHard => Some(Outcome::Hard),
        _ => None,
    }
}

/// What `m`'s channel truly was when it went out.
fn truth_at(c: &SimContact, m: &Message, seen: &Seen) -> Truth {
    let Some(t) = c.truth(m.channel) else {
        return Truth::Bad;
    };
    match t.dies_at.filter(|&d| d <= m.at) {
        Some(died)
            if seen
                .last_failure_sent
                .get(&m.channel)
                .is_some_and(|&f| f >= died) =>
        {
            Truth::DeadSeen
        }
        Some(_) => Truth::DeadUnseen,
        None if t.p < 0.5 => Truth::Bad,
        None => Truth::Working,
    }
}

async fn record(client: &mut Client, c: &SimContact, e: &Observed, n: usize) -> anyhow::Result<()> {
    client
        .record_event(proto::RecordEventRequest {
            event: Some(proto::ChannelEvent {
                event_id: format!("{}-e{n}", c.id),
                contact_id: c.id.clone(),
                channel: proto_channel(e.channel) as i32,
                status: crate::grpc::status_to_proto(e.status) as i32,
                occurred_at: Some(timestamp(e.at)),
                sent_at: e.sent_at.map(timestamp),
                message_id: e.message_id.clone(),
                carrier: e.carrier.into(),
                campaign_id: e.campaign_id.into(),
                sender_id: e.sender_id.into(),
                ..Default::default()
            }),
        })
        .await
        .context("RecordEvent")?;
    Ok(())
}

fn proto_channel(c: Channel) -> proto::Channel {
    match c {
        Channel::Sms => proto::Channel::Sms,
        Channel::Email => proto::Channel::Email,
        Channel::Push => proto::Channel::Push,
        Channel::Voice => proto::Channel::Voice,
    }
}

fn from_proto(value: i32) -> Option<Channel> {
    match proto::Channel::try_from(value).ok()? {
        proto::Channel::Sms => Some(Channel::Sms),
        proto::Channel::Email => Some(Channel::Email),
        proto::Channel::Push => Some(Channel::Push),
        proto::Channel::Voice => Some(Channel::Voice),
        proto::Channel::Unspecified => None,
    }
}

/// The report in markdown.
pub fn render(spec: &EvalSpec, f: &Figures) -> String {
    let mut out = String::new();
    let off: Vec<&str> = [
        ("deaths", spec.effects.deaths),
        ("degradation", spec.effects.degradation),
        ("lost-receipts", spec.effects.lost_receipts),
        ("compliance", spec.effects.compliance),
        ("named-routes", spec.effects.named_routes),
    ]
    .into_iter()
    .filter(|(_, on)| !on)
    .map(|(name, _)| name)
    .collect();
    if !off.is_empty() {
        out += &format!("Effects switched off: {}\n\n", off.join(", "));
    }
    let config = spec
        .config
        .as_ref()
        .map_or("default model".to_string(), |p| p.display().to_string());
    out += &format!(
        "Scenario: {} contacts, seed {}, 120 days, {} messages per contact on average; {} ({} decisions, {} events replayed in {:.0} s)\n\n",
        spec.contacts,
        spec.seed,
        spec.messages_per_contact,
        config,
        f.decisions,
        f.events,
        f.seconds
    );
    out += "| predictor | Brier | log loss | ECE (10 bins) | best-channel hit rate |\n|---|---:|---:|---:|---:|\n";
    for (name, p) in [
        ("reach", &f.model),
        ("campaign average per channel", &f.campaign_average),
        ("last status wins", &f.last_status),
        ("Bayes reference (knows the world's rules)", &f.bayes),
    ] {
        out += &format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            p.calibration.brier(),
            p.calibration.log_loss(),
            p.calibration.ece(),
            f.hit_rate(p)
        );
    }
    let o = &f.oracle.calibration;
    out += &format!(
        "| oracle (true probabilities) | {:.4} | {:.4} | {:.4} | {:.4} |\n\n",
        o.brier(),
        o.log_loss(),
        o.ece(),
        f.oracle_rate()
    );
    out += "Reliability of reach's scores:\n\n| predicted | messages | mean predicted | delivered |\n|---|---:|---:|---:|\n";
    for (lo, n, p, y) in f.model.calibration.reliability() {
        out += &format!("| {lo:.1}-{:.1} | {n} | {p:.3} | {y:.3} |\n", lo + 0.1);
    }
    out += "\n";
    out += &f.breakdown.render();
    let brier = f.model.calibration.brier();
    let avg = f.campaign_average.calibration.brier();
    let last = f.last_status.calibration.brier();
    out += &format!(
        "\n| target | measured | limit | met |\n|---|---:|---:|---|\n\
         | Brier improvement over campaign average | {:.2}% (Brier {brier:.5}, at most {:.5}) | >= 30% | {} |\n\
         | Brier vs last status wins | {brier:.4} vs {last:.4} | better | {} |\n\
         | expected calibration error | {:.4} | <= 0.03 | {} |\n\
         | best-channel hit rate vs oracle | {:.1} points below | <= 3 | {} |\n\
         | opted-out channels chosen | {} | 0 | {} |\n",
        (1.0 - brier / avg) * 100.0,
        0.7 * avg,
        yes(brier <= 0.7 * avg),
        yes(brier < last),
        f.model.calibration.ece(),
        yes(f.model.calibration.ece() <= 0.03),
        (f.oracle_rate() - f.hit_rate(&f.model)) * 100.0,
        yes(f.oracle_rate() - f.hit_rate(&f.model) <= 0.03),
        f.opted_out_choices,
        yes(f.opted_out_choices == 0),
    );
    let bayes = f.bayes.calibration.brier();
    out += &format!(
        "\nThe Bayes reference, which predicts from the same evidence with the world's own rules, \
         is {:.1}% better than the campaign average on Brier and {:.1} points below the oracle's hit rate: \
         no scoring of this evidence does better.\n",
        (1.0 - bayes / avg) * 100.0,
        (f.oracle_rate() - f.hit_rate(&f.bayes)) * 100.0,
    );
    out
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
