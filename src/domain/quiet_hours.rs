//! Quiet hours: when a channel must not be used, in the contact's local
//! time. The local time comes from the contact's time zone; without one,
//! from the phone number's country (a message is allowed only when it is
//! allowed in every zone of the country, so a US number without a zone
//! waits for Hawaii's morning); else from the configured default zone.
//! Times are computed with the IANA database (jiff), so DST shifts are exact.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    str::FromStr,
    sync::{Arc, OnceLock, RwLock},
};

use jiff::{Span, Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Millis};

/// A daily quiet period in local time, `start` to `end` (spanning midnight
/// when `end` is before `start`); equal ends: never quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietWindow {
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
}

impl QuietWindow {
    pub const NONE: QuietWindow = QuietWindow { start: 0, end: 0 };

    pub fn is_none(&self) -> bool {
        self.start == self.end
    }

    fn contains(&self, minute_of_day: u16) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => (self.start..self.end).contains(&minute_of_day),
            std::cmp::Ordering::Greater => minute_of_day >= self.start || minute_of_day < self.end,
        }
    }
}

fn parse_time(s: &str) -> Result<u16, String> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
    );
    if h > 23 || m > 59 {
        return Err(format!("{s:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

impl QuietWindow {
    pub fn new(start: &str, end: &str) -> Result<Self, String> {
        Ok(QuietWindow {
            start: parse_time(start)?,
            end: parse_time(end)?,
        })
    }

    pub fn start_text(&self) -> String {
        Clock(self.start).to_string()
    }

    pub fn end_text(&self) -> String {
        Clock(self.end).to_string()
    }
}

/// Minutes of the day as "HH:MM". Written digit by digit: every answer
/// with quiet hours in force names its window, and `{:02}` through the
/// formatting machinery, with a string for each end, was 1% of a
/// `GetBestChannel`'s server CPU.
struct Clock(u16);

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        let (h, m) = (self.0 / 60 % 100, self.0 % 60);
        let digit = |n: u16| char::from(b'0' + n as u8);
        for c in [
            digit(h / 10),
            digit(h % 10),
            ':',
            digit(m / 10),
            digit(m % 10),
        ] {
            f.write_char(c)?;
        }
        Ok(())
    }
}

/// `"21:00-08:00"`; empty for none.
impl FromStr for QuietWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(QuietWindow::NONE);
        }
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))?;
        QuietWindow::new(start, end)
    }
}

impl fmt::Display for QuietWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return Ok(());
        }
        write!(f, "{}-{}", Clock(self.start), Clock(self.end))
    }
}

impl Serialize for QuietWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for QuietWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `[quiet_hours]`: default quiet periods per channel and the zone of
/// contacts whose zone cannot be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub sms: QuietWindow,
    pub voice: QuietWindow,
    pub email: QuietWindow,
    pub push: QuietWindow,
    /// IANA zone used when neither the contact's zone nor its phone
    /// number's country is known. Empty (the default): quiet hours are not
    /// applied to such contacts, rather than guessed.
    pub default_time_zone: String,
}

impl Default for QuietHoursConfig {
    fn default() -> Self {
        let evening_to_morning = QuietWindow {
            start: 21 * 60,
            end: 8 * 60,
        };
        QuietHoursConfig {
            sms: evening_to_morning,
            voice: evening_to_morning,
            email: QuietWindow::NONE,
            push: QuietWindow::NONE,
            default_time_zone: String::new(),
        }
    }
}

impl QuietHoursConfig {
    pub fn window(&self, channel: Channel) -> QuietWindow {
        match channel {
            Channel::Sms => self.sms,
            Channel::Voice => self.voice,
            Channel::Email => self.email,
            Channel::Push => self.push,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.default_time_zone.is_empty() {
            return Ok(());
        }
        TimeZone::get(&self.default_time_zone)
            .map(drop)
            .map_err(|e| format!("quiet_hours.default_time_zone: {e}"))
    }
}

/// Checks an IANA time zone name.
pub fn check_time_zone(name: &str) -> Result<(), String> {
    TimeZone::get(name)
        .map(drop)
        .map_err(|_| format!("{name:?} is not an IANA time zone (e.g. \"America/New_York\")"))
}

/// A country's zones: the distinct local times among them, how many zones
/// it has, and the first one listed.
type CountryZones = (Arc<[TimeZone]>, usize, &'static str);

/// The zones of each country, from the tz database's zone.tab, resolved
/// once and deduplicated: the 29 US zones keep only 8 distinct local times
/// (Detroit keeps New York's clock), which makes a quiet-hours check of a
/// US number several times cheaper.
fn country_zones() -> &'static HashMap<&'static str, CountryZones> {
    static ZONES: OnceLock<HashMap<&'static str, CountryZones>> = OnceLock::new();
    ZONES.get_or_init(|| {
        let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in include_str!("zone.tab").lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut fields = line.split('\t');
            if let (Some(cc), Some(_), Some(zone)) = (fields.next(), fields.next(), fields.next()) {
                names.entry(cc).or_default().push(zone);
            }
        }
        names
            .into_iter()
            .filter_map(|(cc, zones)| {
                let resolved: Vec<TimeZone> =
                    zones.iter().filter_map(|n| TimeZone::get(n).ok()).collect();
                let distinct = distinct_clocks(resolved);
                (!distinct.is_empty()).then(|| (cc, (distinct.into(), zones.len(), zones[0])))
            })
            .collect()
    })
}

/// Zones whose clocks agree now and at every transition of the next three
/// years are one clock for quiet hours; keeps the first of each.
fn distinct_clocks(zones: Vec<TimeZone>) -> Vec<TimeZone> {
    let now = Timestamp::now();
    let horizon = now
        .checked_add(Span::new().hours(3 * 366 * 24))
        .unwrap_or(Timestamp::MAX);
    let clock = |tz: &TimeZone| {
        let transitions: Vec<(Timestamp, i32)> = tz
            .following(now)
            .take_while(|t| t.timestamp() < horizon)
            .map(|t| (t.timestamp(), t.offset().seconds()))
            .collect();
        (tz.to_offset(now).seconds(), transitions)
    };
    let mut seen = Vec::new();
    let mut kept = Vec::new();
    for tz in zones {
        let key = clock(&tz);
        if !seen.contains(&key) {
            seen.push(key);
            kept.push(tz);
        }
    }
    kept
}

/// Where a contact's local time comes from (borrowed: this is built on
/// every GetBestChannel and only described when quiet hours are on).
#[derive(Clone, Debug)]
enum ZoneSource<'a> {
    Contact(&'a str),
    Country {
        region: &'a str,
        count: usize,
        first: &'static str,
    },
    Default(&'a str),
}

/// The zones of a contact's local time and where they come from.
#[derive(Clone, Debug)]
pub struct LocalZones<'a> {
    zones: Arc<[TimeZone]>,
    source: ZoneSource<'a>,
}

impl LocalZones<'_> {
    /// In words, for explanations: "time zone America/New_York", "all 29
    /// time zones of the number's country US", "default time zone UTC".
    pub fn describe(&self) -> String {
        match &self.source {
            ZoneSource::Contact(name) => format!("time zone {name}"),
            ZoneSource::Country {
                region,
                count: 1,
                first,
            } => {
                format!("time zone {first} of the number's country {region}")
            }
            ZoneSource::Country { region, count, .. } => {
                format!("all {count} time zones of the number's country {region}")
            }
            ZoneSource::Default(name) => format!("default time zone {name}"),
        }
    }
}

/// Resolves contacts' zones: IANA lookups are not free (a search of the
/// bundled database by name), and every GetBestChannel needs one per
/// channel with quiet hours, so resolved zones are kept.
#[derive(Debug)]
pub struct ZoneBook {
    default_name: String,
    default: Option<Arc<[TimeZone]>>,
    named: RwLock<foldhash::HashMap<String, Arc<[TimeZone]>>>,
    /// Recent "quiet until" answers by zones (their description) and
    /// window, each with the instant it was found at; see
    /// [`ZoneBook::quiet_until`].
    answers: RwLock<foldhash::HashMap<String, Vec<Answer>>>,
}

/// "Quiet in `window` from `from` until `until`".
#[derive(Clone, Copy, Debug)]
struct Answer {
    window: QuietWindow,
    from: Millis,
    until: Millis,
}

/// Distinct contact zone names kept resolved (the IANA database has about
/// 600 names with links).
const MAX_NAMED_ZONES: usize = 2048;

/// Distinct sets of zones whose answers are kept; past this the answers
/// start over (each is a search away).
const MAX_ANSWERED_ZONES: usize = 4096;

impl ZoneBook {
    pub fn new(default_time_zone: &str) -> Self {
        ZoneBook {
            default_name: default_time_zone.to_string(),
            default: TimeZone::get(default_time_zone)
                .ok()
                .filter(|_| !default_time_zone.is_empty())
                .map(|tz| [tz].into()),
            named: RwLock::new(foldhash::HashMap::default()),
            answers: RwLock::new(foldhash::HashMap::default()),
        }
    }

    /// As [`quiet_until`], with the zones described for explanations, and
    /// the search for the window's end done once for every contact whose
    /// local time is the same zones while they are in the window: the
    /// answer "quiet until T" found at `from` holds at every instant of
    /// [from, T) when no zone is quiet at T and T is less than two days
    /// away. (The zones' quiet hours then cover that whole stretch: a gap
    /// would begin at a window end before T, among the days searched, at
    /// which no zone is quiet, and the search would have stopped there; so
    /// a search from any instant of it finds T again.) Other answers are
    /// not kept. During a country's quiet hours the search, civil-time
    /// conversions in each of its zones for the next days, was 5.5% of a
    /// `GetBestChannel`'s CPU samples.
    pub fn quiet_until(
        &self,
        window: QuietWindow,
        zones: &LocalZones,
        now: Millis,
    ) -> Option<(Millis, String)> {
        let now_ts = Timestamp::from_millisecond(now.0).ok()?;
        if window.is_none() || !quiet_anywhere(window, &zones.zones, now_ts) {
            return None;
        }
        let described = zones.describe();
        let known = self
            .answers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&described)
            .and_then(|answers| {
                answers
                    .iter()
                    .find(|a| a.window == window && a.from <= now && now < a.until)
                    .map(|a| a.until)
            });
        if let Some(until) = known {
            return Some((until, described));
        }
        let until = window_end(window, &zones.zones, now_ts)?;
        let free_at_end = Timestamp::from_millisecond(until.0)
            .is_ok_and(|at| !quiet_anywhere(window, &zones.zones, at));
        if !free_at_end || until.0 - now.0 >= 2 * 86_400_000 {
            return Some((until, described));
        }
        let mut answers = self.answers.write().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= MAX_ANSWERED_ZONES && !answers.contains_key(&described) {
            answers.clear();
        }
        let list = answers.entry(described.clone()).or_default();
        list.retain(|a| a.window != window);
        list.push(Answer {
            window,
            from: now,
            until,
        });
        Some((until, described))
    }

    /// The contact's zone if known, else its phone region's zones, else the
    /// default zone; `None` if there is none.
    pub fn zones<'a>(&'a self, time_zone: &'a str, region: &'a str) -> Option<LocalZones<'a>> {
        if !time_zone.is_empty()
            && let Some(zones) = self.named(time_zone)
        {
            return Some(LocalZones {
                zones,
                source: ZoneSource::Contact(time_zone),
            });
        }
        if let [a, b] = region.as_bytes() {
            let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
            let found = std::str::from_utf8(&upper)
                .ok()
                .and_then(|cc| country_zones().get(cc));
            if let Some((zones, count, first)) = found {
                return Some(LocalZones {
                    zones: zones.clone(),
                    source: ZoneSource::Country {
                        count: *count,
                        region,
                        first,
                    },
                });
            }
        }
        Some(LocalZones {
            zones: self.default.clone()?,
            source: ZoneSource::Default(&self.default_name),
        })
    }

    fn named(&self, name: &str) -> Option<Arc<[TimeZone]>> {
        if let Some(zones) = self
            .named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Some(zones.clone());
        }
        let zones: Arc<[TimeZone]> = [TimeZone::get(name).ok()?].into();
        let mut named = self.named.write().unwrap_or_else(|e| e.into_inner());
        if named.len() < MAX_NAMED_ZONES {
            named.insert(name.to_string(), zones.clone());
        }
        Some(zones)
    }
}

/// Minutes after local midnight at an instant in a zone: the zone's offset
/// at that instant is all it takes (a zoned date-time, built and dropped for
/// each zone of every check, was most of the cost of a quiet-hours check).
fn minute_of_day(zone: &TimeZone, at: Timestamp) -> u16 {
    let local = at.as_second() + i64::from(zone.to_offset(at).seconds());
    // In 0..1440, so the cast is exact.
    (local.rem_euclid(86_400) / 60) as u16
}

/// Whether a window is on at an instant in a zone.
fn quiet_in(window: QuietWindow, zone: &TimeZone, at: Timestamp) -> bool {
    window.contains(minute_of_day(zone, at))
}

/// Whether the window is on in any of the zones at an instant.
fn quiet_anywhere(window: QuietWindow, zones: &[TimeZone], at: Timestamp) -> bool {
    zones.iter().any(|z| quiet_in(window, z, at))
}

/// The quiet hours of a channel now: `None` if the channel may be used
/// now, else the earliest instant it may (if no instant within two days
/// suits every zone, the first zone decides). Served through
/// [`ZoneBook::quiet_until`]; the tests compare the two.
#[cfg(test)]
fn quiet_until(window: QuietWindow, zones: &LocalZones, now: Millis) -> Option<Millis> {
    if window.is_none() {
        return None;
    }
    let now_ts = Timestamp::from_millisecond(now.0).ok()?;
    if !quiet_anywhere(window, &zones.zones, now_ts) {
        return None;
    }
    window_end(window, &zones.zones, now_ts)
}

/// When a window that is on at `now` in some of `zones` is off in all of
/// them (else in the first).
fn window_end(window: QuietWindow, zones: &[TimeZone], now_ts: Timestamp) -> Option<Millis> {
    let (end_hour, end_minute) = ((window.end / 60) as i8, (window.end % 60) as i8);
    let earliest = |zones: &[TimeZone]| -> Option<Timestamp> {
        // Candidates: the local end of the window on the next few days in
        // each zone; the first at which no zone is quiet wins. Zones of one
        // country often end their window at the same instant: each instant
        // is checked once.
        let mut candidates: Vec<Timestamp> = Vec::with_capacity(4 * zones.len());
        for zone in zones {
            let today = zone.to_datetime(now_ts).date();
            for days in 0..=3 {
                let Ok(date) = today.checked_add(Span::new().days(days)) else {
                    continue;
                };
                let end = date.at(end_hour, end_minute, 0, 0);
                // "Compatible": an end inside a DST gap moves forward by
                // the gap, an end in a repeated hour takes the first one.
                if let Ok(at) = zone.to_ambiguous_timestamp(end).compatible()
                    && at > now_ts
                {
                    candidates.push(at);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .find(|&at| !quiet_anywhere(window, zones, at))
    };
    let until = earliest(zones).or_else(|| earliest(&zones[..1]))?;
    Some(Millis(until.as_millisecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Millis {
        Millis(s.parse::<Timestamp>().unwrap().as_millisecond())
    }

    fn sms() -> QuietWindow {
        "21:00-08:00".parse().unwrap()
    }

    #[test]
    fn a_contact_zone_is_used_across_midnight_and_dst() {
        let book = ZoneBook::new("UTC");
        let ny = book.zones("America/New_York", "").unwrap();
        // 22:30 EST on 7 March: wait for 08:00 the next morning, which is
        // already daylight time (EDT, UTC-4) on 8 March.
        assert_eq!(
            quiet_until(sms(), &ny, at("2026-03-08T03:30:00Z")),
            Some(at("2026-03-08T12:00:00Z"))
        );
        // 12:00 local: allowed.
        assert_eq!(quiet_until(sms(), &ny, at("2026-03-09T16:00:00Z")), None);
    }

    #[test]
    fn a_country_with_several_zones_waits_for_all_of_them() {
        let book = ZoneBook::new("UTC");
        let us = book.zones("", "US").unwrap();
        assert!(
            us.describe().contains("all 29 time zones"),
            "{}",
            us.describe()
        );
        assert!(
            (5..29).contains(&us.zones.len()),
            "{} distinct clocks",
            us.zones.len()
        );
        // 14:00 UTC in January: 09:00 in New York but 04:00 in Honolulu.
        let until = quiet_until(sms(), &us, at("2026-01-15T14:00:00Z")).unwrap();
        assert_eq!(until, at("2026-01-15T18:00:00Z"), "08:00 in Honolulu");
        let gb = book.zones("", "gb").unwrap();
        assert_eq!(gb.zones.len(), 1);
        assert_eq!(
            book.zones("Mars/Base", "").unwrap().describe(),
            "default time zone UTC"
        );
        assert!(
            ZoneBook::new("").zones("", "").is_none(),
            "unknown: not guessed"
        );
    }

    #[test]
    fn kept_answers_are_the_searchs_at_every_instant() {
        // One book answers many contacts over days that cross DST changes
        // on both sides of the Atlantic, with the clock going forward and,
        // once, back; each answer must be what a fresh search finds.
        let book = ZoneBook::new("Europe/Berlin");
        let windows = [
            sms(),
            "22:00-07:30".parse().unwrap(),
            "08:00-20:00".parse().unwrap(),
        ];
        let lookups = [
            ("", "US"),
            ("", "CA"),
            ("", "AU"),
            ("America/New_York", ""),
            ("Europe/London", ""),
            ("", ""),
        ];
        let (mut quiet, mut kept) = (0, 0);
        for start in ["2026-03-06T00:00:00Z", "2026-10-23T00:00:00Z"] {
            let mut now = at(start);
            let stop = Millis(now.0 + 12 * 86_400_000);
            let mut step = 0;
            while now < stop {
                for (zone, region) in lookups {
                    let zones = book.zones(zone, region).unwrap();
                    for window in windows {
                        let fresh = quiet_until(window, &zones, now);
                        let served = book.quiet_until(window, &zones, now);
                        assert_eq!(
                            served.as_ref().map(|(until, _)| *until),
                            fresh,
                            "{window} in {} at {now:?}",
                            zones.describe()
                        );
                        if let Some((_, described)) = served {
                            assert_eq!(described, zones.describe());
                            quiet += 1;
                        }
                    }
                }
                step += 1;
                // Mostly forward by 13 minutes; every 50th step back by
                // two hours, as a clock set back would.
                now = if step % 50 == 0 {
                    Millis(now.0 - 2 * 3_600_000)
                } else {
                    Millis(now.0 + 13 * 60_000)
                };
            }
        }
        for answers in book.answers.read().unwrap().values() {
            kept += answers.len();
        }
        assert!(quiet > 5_000, "{quiet} quiet answers checked");
        assert!(kept > 0 && kept <= lookups.len() * windows.len());
    }

    #[test]
    fn the_local_minute_is_the_zoned_clocks_across_dst_and_odd_offsets() {
        // Half- and quarter-hour offsets, a half-hour DST shift, both
        // hemispheres, and instants before 1970.
        for name in [
            "America/New_York",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "America/St_Johns",
            "Europe/London",
        ] {
            let zone = TimeZone::get(name).unwrap();
            for start in ["1969-12-20T00:00:00Z", "2026-03-01T00:00:00Z"] {
                let mut at: Timestamp = start.parse().unwrap();
                let end = at.checked_add(Span::new().hours(24 * 300)).unwrap();
                while at < end {
                    let clock = at.to_zoned_datetime(zone.clone()).time();
                    let expected = clock.hour() as u16 * 60 + clock.minute() as u16;
                    assert_eq!(minute_of_day(&zone, at), expected, "{name} at {at}");
                    at = at.checked_add(Span::new().minutes(97)).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_window_ending_in_a_dst_gap_or_fold_ends_at_the_compatible_instant() {
        let book = ZoneBook::new("UTC");
        let ny = book.zones("America/New_York", "").unwrap();
        // 02:30 does not exist in New York on 8 March 2026 (02:00 EST is
        // 03:00 EDT): the end moves forward by the gap, to 03:30 EDT.
        let window: QuietWindow = "21:00-02:30".parse().unwrap();
        assert_eq!(
            quiet_until(window, &ny, at("2026-03-08T05:00:00Z")),
            Some(at("2026-03-08T07:30:00Z"))
        );
        // 01:30 happens twice on 1 November 2026 (EDT, then EST): the
        // first one ends the window.
        let window: QuietWindow = "21:00-01:30".parse().unwrap();
        assert_eq!(
            quiet_until(window, &ny, at("2026-11-01T03:00:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
    }

    #[test]
    fn windows_parse_and_print() {
        assert_eq!(sms().to_string(), "21:00-08:00");
        let w = QuietWindow::new("0:00", "23:59").unwrap();
        assert_eq!(
            (w.start_text(), w.end_text()),
            ("00:00".into(), "23:59".into())
        );
        assert_eq!(
            QuietWindow::new("9:05", "12:30").unwrap().to_string(),
            "09:05-12:30"
        );
        assert!("25:00-08:00".parse::<QuietWindow>().is_err());
        assert!("".parse::<QuietWindow>().unwrap().is_none());
        assert!(!sms().contains(8 * 60) && sms().contains(7 * 60 + 59) && sms().contains(21 * 60));
    }
}
