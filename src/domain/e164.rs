//! Phone numbers written in E.164 (`+` and the digits, as providers and
//! most senders write them), read without the phonenumber crate's parser.
//!
//! The crate's parser costs about 1 us a number in one thread (more under
//! load: a parser combinator, then a dozen regex searches through the
//! crate's one process-wide regex cache, locked for each search, which
//! hashes the pattern's text to find it): 3% of the server's CPU in a bulk
//! stream of numbers it had not seen lately. Read here, 0.25 us. For a number
//! already in E.164 nearly all of its steps change nothing. This module
//! takes the country code off the front as the crate does (the first one,
//! two or three digits that are a country code) and leaves the number to
//! the crate's parser whenever one of the parser's steps might change it:
//! when the digits after the `+` start with the given region's international
//! prefix, or the national number with a national prefix (or with what a
//! plan's pattern for parsing one matches) of a plan that could read it.
//! So a number read here is what the crate would have read, and the test
//! below compares the two readings over every example number of every plan,
//! written with and without the prefixes that make the crate change them.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{Arc, LazyLock},
};

use arc_swap::ArcSwap;
use phonenumber::{
    Type,
    metadata::{Database, Metadata},
};
use regex::Regex;

use crate::domain::numbering_plan::{compile, plan_of_digits};

/// The crate's bounds on a national significant number's length
/// (`consts::MIN_LENGTH_FOR_NSN` and `MAX_LENGTH_FOR_NSN`, not exported).
const NATIONAL_DIGITS: std::ops::RangeInclusive<usize> = 2..=17;

/// A valid number read from its E.164 form.
#[derive(Debug)]
pub struct E164<'d, 'a> {
    pub code: u16,
    /// The national significant number, leading zeros included.
    pub national: &'a str,
    pub plan: &'d Metadata,
    /// Never `Unknown`: a number of no known type is not read here.
    pub kind: Type,
}

/// Reads `raw` if it is `+` and digits only and the crate's parser would
/// read it as it stands, in `region` (a region id the database knows, as
/// the crate's parser was given it) or in none. `None`: `raw` is for the
/// crate's parser (which may still accept it, or refuse it with a reason).
pub fn read<'d, 'a>(
    database: &'d Database,
    raw: &'a str,
    region: Option<&str>,
) -> Option<E164<'d, 'a>> {
    let digits = raw.strip_prefix('+')?;
    // A country code does not start with 0; a string this short is the
    // parser's to refuse.
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() < 4 || digits.starts_with('0') {
        return None;
    }
    let stripped_here = match region {
        Some(region) => {
            // The parser strips the region's international prefix after a
            // `+` ("+011 44..." read in the US), and strips a national
            // prefix with the *given* region's plan, whatever the code.
            let prefixes = region_prefixes(database, region)?;
            let idd = prefixes.international.as_ref();
            if idd.is_some_and(|idd| idd.is_match(digits)) {
                return None;
            }
            Some(prefixes)
        }
        None => None,
    };
    let (code, national) = (1..=3).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        database.by_code(&code).map(|_| (code, &digits[len..]))
    })?;
    if !NATIONAL_DIGITS.contains(&national.len()) {
        return None;
    }
    let strips = match &stripped_here {
        Some(prefixes) => prefixes
            .national
            .as_ref()
            .is_some_and(|p| p.is_match(national)),
        // Without a region, the parser strips with the plan of the code
        // that it finds the number in: here, with any of the code's plans.
        None => code_prefixes(database, code).is_none_or(|p| p.is_match(national)),
    };
    if strips {
        return None;
    }
    let (plan, kind) = plan_of_digits(database, code, national)?;
    (kind != Type::Unknown).then_some(E164 {
        code,
        national,
        plan,
        kind,
    })
}

/// What the parser may take off the front of a number read in one region.
struct RegionPrefixes {
    /// Its international (IDD) prefix, anchored at the first digit.
    international: Option<Regex>,
    /// Its national prefix and its pattern for parsing one, anchored.
    national: Option<Regex>,
}

/// The prefixes of `region`'s plan; `None` if the database has no such
/// plan (the parser's to refuse) or a pattern does not compile here.
fn region_prefixes(database: &Database, region: &str) -> Option<Arc<RegionPrefixes>> {
    static REGIONS: Once<Box<str>, Option<Arc<RegionPrefixes>>> = LazyLock::new(Default::default);
    compiled_once(&REGIONS, region, || {
        let plan = database.by_id(region)?;
        let international = match plan.international_prefix() {
            Some(idd) => Some(compile(&format!("^(?:{})", idd.as_str()))?),
            None => None,
        };
        let national = match national_prefixes([plan]) {
            Prefixes::None => None,
            Prefixes::Pattern(pattern) => Some(pattern),
            Prefixes::Unreadable => return None,
        };
        Some(Arc::new(RegionPrefixes {
            international,
            national,
        }))
    })
}

/// The national prefixes of every plan of `code`, as one anchored pattern;
/// `None` if one does not compile here (then every number of the code is
/// the parser's). A code without any is a pattern that matches nothing.
fn code_prefixes(database: &Database, code: u16) -> Option<Arc<Regex>> {
    static CODES: Once<u16, Option<Arc<Regex>>> = LazyLock::new(Default::default);
    compiled_once(&CODES, &code, || {
        let plans = database.by_code(&code).unwrap_or_default();
        match national_prefixes(plans) {
            Prefixes::None => compile(r"[^\s\S]").map(Arc::new),
            Prefixes::Pattern(pattern) => Some(Arc::new(pattern)),
            Prefixes::Unreadable => None,
        }
    })
}

enum Prefixes {
    None,
    Pattern(Regex),
    /// A pattern of the metadata that the regex crate refuses here.
    Unreadable,
}

/// One pattern matching, at a national number's first digit, any of the
/// plans' national prefixes or patterns for parsing one. The parser
/// strips only such a match at the first digit, so a number this does not
/// match is one the parser leaves as it is.
fn national_prefixes<'m>(plans: impl IntoIterator<Item = &'m Metadata>) -> Prefixes {
    let mut alternatives = Vec::new();
    for plan in plans {
        if let Some(parsing) = plan.national_prefix_for_parsing() {
            alternatives.push(format!("(?:{})", parsing.as_str()));
        }
        if let Some(prefix) = plan.national_prefix() {
            alternatives.push(regex::escape(prefix));
        }
    }
    if alternatives.is_empty() {
        return Prefixes::None;
    }
    match compile(&format!("^(?:{})", alternatives.join("|"))) {
        Some(pattern) => Prefixes::Pattern(pattern),
        None => Prefixes::Unreadable,
    }
}

/// Values made once per process and key.
type Once<K, V> = LazyLock<ArcSwap<HashMap<K, V>>>;

/// `make`'s value for `key`, made once per process: read without a lock,
/// and the map replaced when a key is seen for the first time.
fn compiled_once<K, Q, V>(cache: &ArcSwap<HashMap<K, V>>, key: &Q, make: impl FnOnce() -> V) -> V
where
    K: Borrow<Q> + Hash + Eq + Clone,
    Q: Hash + Eq + ToOwned + ?Sized,
    Q::Owned: Into<K>,
    V: Clone,
{
    if let Some(value) = cache.load().get(key) {
        return value.clone();
    }
    let value = make();
    cache.rcu(|map| {
        let mut next = HashMap::clone(map);
        next.entry(key.to_owned().into())
            .or_insert_with(|| value.clone());
        next
    });
    value
}

#[cfg(test)]
mod tests {
    use phonenumber::{PhoneNumber, country};

    use super::*;
    use crate::domain::numbering_plan::plan_of;

    /// Ways of writing each example number of each plan: as it stands, with
    /// the plan's national prefix (or a 0 or 1) after the code, after an
    /// international prefix, a digit longer and shorter.
    fn written_forms(database: &Database) -> Vec<(String, bool)> {
        let mut forms = Vec::new();
        for plan in database.iter() {
            let d = plan.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|d| d.example());
            let code = plan.country_code();
            for e in examples {
                forms.push((format!("+{code}{e}"), true));
                for prefix in [plan.national_prefix().unwrap_or("0"), "0", "1", "9"] {
                    forms.push((format!("+{code}{prefix}{e}"), false));
                }
                for idd in ["011", "00", "810", "0011", "010"] {
                    forms.push((format!("+{idd}{code}{e}"), false));
                }
                forms.push((format!("+{code}{e}5"), false));
                // The same start, other ends.
                let mut rng = fastrand::Rng::with_seed(u64::from(code));
                for _ in 0..3 {
                    let keep = e.len().saturating_sub(4);
                    let end = rng.u32(..10_000);
                    forms.push((format!("+{code}{}{end:04}", &e[..keep]), false));
                }
                forms.push((format!("+{code}{}", &e[..e.len() - 1]), false));
            }
        }
        forms
    }

    fn crates_reading(raw: &str, region: Option<&str>) -> Option<PhoneNumber> {
        phonenumber::parse(region.map(|r| r.parse::<country::Id>().unwrap()), raw).ok()
    }

    /// Every number read here is read alike by the crate's parser (then
    /// [`plan_of`], as `address::phone` does); and nearly every example
    /// number written in E.164 is read here, not left to the parser.
    #[test]
    fn a_number_read_here_is_the_crates_reading() {
        let database = &phonenumber::metadata::DATABASE;
        let forms = written_forms(database);
        let (mut read_here, mut valid_examples, mut examples_read_here) = (0, 0, 0);
        for (raw, as_written) in &forms {
            let own = raw_region(database, raw);
            for region in [None, Some("US"), Some("RU"), Some("BR"), Some("AR"), own] {
                let ours = read(database, raw, region);
                let theirs = crates_reading(raw, region).and_then(|number| {
                    let (plan, kind) = plan_of(database, &number)?;
                    (kind != Type::Unknown).then_some((number, plan.id(), kind))
                });
                if let Some(ours) = &ours {
                    let (number, plan, kind) = theirs
                        .as_ref()
                        .unwrap_or_else(|| panic!("{raw} in {region:?}: read here only"));
                    assert_eq!(ours.code, number.code().value(), "{raw} in {region:?}");
                    assert_eq!(
                        ours.national,
                        number.national().to_string(),
                        "{raw} in {region:?}"
                    );
                    assert_eq!(
                        (ours.plan.id(), ours.kind),
                        (*plan, *kind),
                        "{raw} in {region:?}"
                    );
                    read_here += 1;
                }
                if *as_written && region.is_none() && theirs.is_some() {
                    valid_examples += 1;
                    examples_read_here += usize::from(ours.is_some());
                    if ours.is_none() {
                        eprintln!("left to the parser: {raw}");
                    }
                }
            }
        }
        eprintln!(
            "{read_here} readings of {} forms compared; {examples_read_here} of {valid_examples} \
             valid examples read here",
            forms.len()
        );
        assert!(valid_examples > 900, "{valid_examples} valid examples");
        assert!(
            examples_read_here * 100 >= valid_examples * 95,
            "only {examples_read_here} of {valid_examples} examples read here"
        );
    }

    /// The region whose plan the example came from, if it is a country.
    fn raw_region(database: &Database, raw: &str) -> Option<&'static str> {
        let number = phonenumber::parse(None, raw).ok()?;
        let (plan, _) = plan_of(database, &number)?;
        let id: country::Id = plan.id().parse().ok()?;
        Some(Box::leak(id.as_ref().to_string().into_boxed_str()))
    }

    #[test]
    fn numbers_the_parser_would_change_are_left_to_it() {
        let database = &phonenumber::metadata::DATABASE;
        // Valid as written; each has something the parser looks at.
        assert!(read(database, "+16502001234", None).is_some());
        assert!(read(database, "+16502001234", Some("US")).is_some());
        // The US's international prefix after the `+`.
        assert!(read(database, "+01144207946000", Some("US")).is_none());
        // The NANP's national prefix after the code.
        assert!(read(database, "+116502001234", None).is_none());
        // Spaces, an extension, letters: the parser's.
        for raw in [
            "+1 650 200 1234",
            "+16502001234;ext=5",
            "+1650CALLNOW",
            "16502001234",
        ] {
            assert!(read(database, raw, None).is_none(), "{raw}");
        }
        // Not a valid number: the parser's, to refuse with its reason.
        assert!(read(database, "+10000000000", None).is_none());
        // Leading zeros are kept, as the crate keeps them.
        let italian = read(database, "+390212345678", None).unwrap();
        assert_eq!(
            (italian.code, italian.national, italian.plan.id()),
            (39, "0212345678", "IT")
        );
    }
}
