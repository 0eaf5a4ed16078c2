//! What the server itself measured of the soak's calls: its
//! `reach_request_duration_seconds` histogram, scraped from `/metrics` at
//! each window's end. The client's latency runs from a call's scheduled
//! start to its reply; the server's, from the call reaching its services to
//! the reply leaving them. A client p99 far above the server's was spent
//! outside the server's handlers: in the client's own queue, on the
//! connections, or waiting for a CPU.

/// The methods the soak calls, as the server labels them.
const SOAK_METHODS: [&str; 2] = [
    "/reachability.v1.ReachabilityService/GetBestChannel",
    "/reachability.v1.ReachabilityService/RecordEvent",
];

/// Cumulative counts of the soak's calls by bucket bound (seconds, ascending,
/// `+Inf` last), summed over its methods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    /// The buckets in a Prometheus text exposition.
    pub fn parse(text: &str) -> Buckets {
        let mut sums: Vec<(f64, u64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("reach_request_duration_seconds_bucket{") else {
                continue;
            };
            let Some((labels, count)) = rest.split_once("} ") else {
                continue;
            };
            if !SOAK_METHODS
                .iter()
                .any(|m| labels.contains(&format!("method=\"{m}\"")))
            {
                continue;
            }
            let bound = labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))
                .and_then(|b| b.strip_suffix('"'))
                .and_then(|b| b.parse::<f64>().ok());
            let count = count.trim().parse::<f64>().ok();
            let (Some(bound), Some(count)) = (bound, count) else {
                continue;
            };
            match sums.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, sum)) => *sum += count as u64,
                None => sums.push((bound, count as u64)),
            }
        }
        sums.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(sums)
    }

    /// The bound of the bucket that holds the 99th percentile of the calls
    /// counted since `before`, in seconds (`+Inf` if beyond the last bound);
    /// none if no call was counted.
    pub fn p99_since(&self, before: &Buckets) -> Option<f64> {
        let counted = |bound: f64, cumulative: u64| {
            let earlier = before
                .0
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c);
            cumulative.saturating_sub(earlier)
        };
        let &(last_bound, last) = self.0.last()?;
        let total = counted(last_bound, last);
        if total == 0 {
            return None;
        }
        let wanted = (total as f64 * 0.99).ceil() as u64;
        self.0
            .iter()
            .find(|(bound, cumulative)| counted(*bound, *cumulative) >= wanted)
            .map(|(bound, _)| *bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(best: [u64; 4], record: [u64; 4]) -> String {
        let mut text = String::from("# TYPE reach_request_duration_seconds histogram\n");
        for (method, counts) in [("GetBestChannel", best), ("RecordEvent", record)] {
            for (bound, count) in ["0.001", "0.1", "1", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "reach_request_duration_seconds_bucket{{method=\"/reachability.v1.ReachabilityService/{method}\",le=\"{bound}\"}} {count}\n"
                ));
            }
        }
        // Another method's calls are not the soak's.
        text.push_str("reach_request_duration_seconds_bucket{method=\"/grpc.health.v1.Health/Watch\",le=\"+Inf\"} 7\n");
        text
    }

    #[test]
    fn the_soak_calls_are_summed_by_bound_and_others_left_out() {
        let buckets = Buckets::parse(&exposition([90, 99, 100, 100], [5, 10, 10, 10]));
        assert_eq!(
            buckets,
            Buckets(vec![
                (0.001, 95),
                (0.1, 109),
                (1.0, 110),
                (f64::INFINITY, 110)
            ])
        );
    }

    #[test]
    fn the_p99_bucket_is_of_the_calls_since_the_last_scrape() {
        let before = Buckets::parse(&exposition([1000, 1000, 1000, 1000], [0, 0, 0, 0]));
        // 100 new calls: 98 under 1 ms, one under 100 ms, one under 1 s.
        let after = Buckets::parse(&exposition([1098, 1099, 1100, 1100], [0, 0, 0, 0]));
        assert_eq!(after.p99_since(&before), Some(0.1));
        // The same calls with nothing before: 1,098 of 1,100 under 1 ms.
        assert_eq!(after.p99_since(&Buckets::default()), Some(0.001));
        // A slow call among few is the p99.
        let slow = Buckets::parse(&exposition([1000, 1000, 1001, 1001], [0, 0, 0, 0]));
        assert_eq!(slow.p99_since(&before), Some(1.0));
        assert_eq!(before.p99_since(&before), None);
        assert_eq!(Buckets::default().p99_since(&Buckets::default()), None);
    }
}
