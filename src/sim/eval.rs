//! `reach eval`: replays a simulated population through a real `reach
//! serve` over gRPC and scores its predictions against the hidden truth.
//!
//! Contacts are independent (a contact's scores depend on its own events
//! only), so each is replayed in its own time order by one of many workers:
//! before each message, every event the sender would have seen by then is
//! recorded, then `GetBestChannel` (evaluated `as_of` the send time) gives
//! the score of the message's channel and the channel reach would choose;
//! only then is the message's true outcome used.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use anyhow::Context;
use tonic::transport::Channel as Transport;

use crate::{
    bench::child::ServerProcess,
    domain::{Channel, Millis, Status},
    grpc::timestamp,
    proto::{self, reachability_service_client::ReachabilityServiceClient},
    sim::{
        metrics::Calibration,
        population::{Observed, Scenario, SimContact, contact},
    },
};

type Client = ReachabilityServiceClient<Transport>;
const DAY: i64 = 86_400_000;

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
}

impl Figures {
    fn merge(&mut self, o: &Figures) {
        self.model.merge(&o.model);
        self.campaign_average.merge(&o.campaign_average);
        self.last_status.merge(&o.last_status);
        self.oracle.merge(&o.oracle);
        self.oracle_p += o.oracle_p;
        self.decisions += o.decisions;
        self.opted_out_choices += o.opted_out_choices;
        self.no_channel += o.no_channel;
        self.events += o.events;
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
    let average = Arc::new(CampaignAverage::build(&scenario));
    let data_dir = spec
        .work_dir
        .join(format!("eval-{}-{}", spec.contacts, spec.seed));
    let _ = std::fs::remove_dir_all(&data_dir);
    let server = ServerProcess::reach_with(&data_dir, spec.config.as_deref()).await?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))?;
    let mut tasks = Vec::new();
    for w in 0..spec.workers.max(1) {
        let (scenario, average) = (scenario.clone(), average.clone());
        let channel = endpoint.connect().await.context("connecting")?;
        let workers = spec.workers.max(1) as u64;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(channel);
            let mut figures = Figures::default();
            let mut i = w as u64;
            while i < scenario.contacts {
                let c = contact(&scenario, i);
                replay(&mut client, &c, &scenario, &average, &mut figures).await?;
                i += workers;
            }
            anyhow::Ok(figures)
        }));
    }
    let mut figures = Figures::default();
    for task in tasks {
        figures.merge(&task.await??);
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(&data_dir);
    figures.seconds = started.elapsed().as_secs_f64();
    Ok(figures)
}

async fn replay(
    client: &mut Client,
    c: &SimContact,
    s: &Scenario,
    average: &CampaignAverage,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let mut next = 0;
    let mut last: HashMap<Channel, bool> = HashMap::new();
    let channels: Vec<Channel> = c.channels.iter().map(|t| t.channel).collect();
    for m in &c.messages {
        while next < c.events.len() && c.events[next].at < m.at {
            let e = &c.events[next];
            record(client, c, e, next).await?;
            if let Some(delivered) = final_outcome(e.status) {
                last.insert(e.channel, delivered);
            }
            f.events += 1;
            next += 1;
        }
        if m.blocked {
            // The sender's registration, not the contact: not a prediction.
            continue;
        }
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
        let avg = |ch: Channel| average.rate(ch, m.at, s);
        let last_status = |ch: Channel| match last.get(&ch) {
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
        f.oracle
            .calibration
            .add(c.true_p(m.channel, m.at, s), m.delivered);

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
    }
    Ok(())
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
    let brier = f.model.calibration.brier();
    let avg = f.campaign_average.calibration.brier();
    let last = f.last_status.calibration.brier();
    out += &format!(
        "\n| target | measured | limit | met |\n|---|---:|---:|---|\n\
         | Brier improvement over campaign average | {:.1}% | >= 30% | {} |\n\
         | Brier vs last status wins | {brier:.4} vs {last:.4} | better | {} |\n\
         | expected calibration error | {:.4} | <= 0.03 | {} |\n\
         | best-channel hit rate vs oracle | {:.1} points below | <= 3 | {} |\n\
         | opted-out channels chosen | {} | 0 | {} |\n",
        (1.0 - brier / avg) * 100.0,
        yes(brier <= 0.7 * avg),
        yes(brier < last),
        f.model.calibration.ece(),
        yes(f.model.calibration.ece() <= 0.03),
        (f.oracle_rate() - f.hit_rate(&f.model)) * 100.0,
        yes(f.oracle_rate() - f.hit_rate(&f.model) <= 0.03),
        f.opted_out_choices,
        yes(f.opted_out_choices == 0),
    );
    out
}

fn yes(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
