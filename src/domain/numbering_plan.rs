//! Which numbering plan a phone number belongs to, and its type in it, from
//! libphonenumber's metadata as the phonenumber crate ships it.
//!
//! Not the crate's `PhoneNumber::number_type` and `PhoneNumber::metadata`:
//! in phonenumber 0.3.10 both match the national number without its leading
//! zeros, so an Italian fixed line (+39 02 1234 5678), every Ivorian number
//! (+225 07 ...) and a San Marino fixed line came back of unknown type and
//! were refused as invalid. The crate's `is_valid_with` reads the number
//! whole, and so does this module, which takes the same steps as the crate's
//! private `validator::source_for` and `validator::number_type` on the
//! crate's public metadata. It also works the type out once, where the two
//! calls did it three times for a +1 number (twice while looking for its
//! region, among the NANP countries sharing the code).
//!
//! Nor the crate's `Descriptor::is_match`: every call locks the crate's
//! one regex cache (shared by all threads, 100 patterns for a database of
//! thousands), hashes the pattern's text to find it there (the US fixed-line
//! pattern is kilobytes of area codes) and searches the number unanchored,
//! keeping a match that starts at its first digit. Here each plan's patterns
//! are compiled once, anchored at both ends as libphonenumber matches a
//! national number (whole, not by prefix), and kept for the process.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use arc_swap::ArcSwap;
use phonenumber::{
    PhoneNumber, Type,
    metadata::{Database, Descriptor, Metadata},
};
use regex::{Regex, RegexBuilder};

/// The plan of the region `number` belongs to, and the number's type in it;
/// `None` if no region of its country code has it. A number of a plan whose
/// patterns it does not match has the type `Unknown`: not a valid number.
pub fn plan_of<'d>(database: &'d Database, number: &PhoneNumber) -> Option<(&'d Metadata, Type)> {
    plan_of_digits(
        database,
        number.code().value(),
        &number.national().to_string(),
    )
}

/// [`plan_of`] for the country code `code` and the national significant
/// number `national` (its digits, leading zeros included).
pub fn plan_of_digits<'d>(
    database: &'d Database,
    code: u16,
    national: &str,
) -> Option<(&'d Metadata, Type)> {
    let regions = database.region(&code)?;
    if let [only] = regions.as_slice() {
        // "001" stands for the plan of a non-geographic code (+800, +882...).
        let plan = if *only == "001" {
            database.by_code(&code)?.into_iter().next()?
        } else {
            database.by_id(*only)?
        };
        return Some((plan, with_patterns(plan, |p| p.number_type(national))));
    }
    // Codes shared by several regions (+1, +7, +44...): the first region
    // whose leading digits the number starts with, or, for a region without
    // leading digits (the code's main country), whose patterns it matches.
    for region in regions {
        let plan = database.by_id(region)?;
        let found = with_patterns(plan, |p| match &p.leading_digits {
            Some(leading) => leading.is_match(national).then(|| p.number_type(national)),
            None => Some(p.number_type(national)).filter(|kind| *kind != Type::Unknown),
        });
        if let Some(kind) = found {
            return Some((plan, kind));
        }
    }
    None
}

/// One descriptor's pattern, compiled to match a national number whole.
struct Pattern {
    /// `None` if the pattern does not compile: it then matches nothing
    /// (a test compiles every plan's patterns).
    regex: Option<Regex>,
    /// The national numbers' lengths the descriptor allows; empty: any.
    lengths: Vec<u16>,
}

impl Pattern {
    fn new(descriptor: &Descriptor) -> Pattern {
        let source = descriptor.national_number().as_str();
        Pattern {
            regex: compile(&format!("^(?:{source})$")),
            lengths: descriptor.possible_length().to_vec(),
        }
    }

    fn is_match(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.as_ref().is_some_and(|r| r.is_match(national))
    }
}

/// A plan's patterns, in the order libphonenumber tries them.
struct PlanPatterns {
    /// Matched from the number's first digit (a prefix, as the metadata
    /// means it), for the regions that share a country code.
    leading_digits: Option<Regex>,
    general: Pattern,
    special: Vec<(Pattern, Type)>,
    fixed_line: Option<Pattern>,
    mobile: Option<Pattern>,
    /// Plans that do not tell fixed lines from mobiles (the NANP's) give
    /// both the same pattern.
    fixed_line_is_mobile: bool,
}

impl PlanPatterns {
    fn new(plan: &Metadata) -> PlanPatterns {
        let d = plan.descriptors();
        let special = [
            (d.premium_rate(), Type::PremiumRate),
            (d.toll_free(), Type::TollFree),
            (d.shared_cost(), Type::SharedCost),
            (d.voip(), Type::Voip),
            (d.personal_number(), Type::PersonalNumber),
            (d.pager(), Type::Pager),
            (d.uan(), Type::Uan),
            (d.voicemail(), Type::Voicemail),
        ];
        PlanPatterns {
            leading_digits: plan
                .leading_digits()
                .and_then(|l| compile(&format!("^(?:{})", l.as_str()))),
            general: Pattern::new(d.general()),
            special: special
                .into_iter()
                .filter_map(|(d, kind)| Some((Pattern::new(d?), kind)))
                .collect(),
            fixed_line: d.fixed_line().map(Pattern::new),
            mobile: d.mobile().map(Pattern::new),
            fixed_line_is_mobile: d.fixed_line().map(|d| d.national_number().as_str())
                == d.mobile().map(|d| d.national_number().as_str()),
        }
    }

    /// The type of the national significant number `national` (leading
    /// zeros included), in libphonenumber's order: the special services
    /// first, then fixed line and mobile.
    fn number_type(&self, national: &str) -> Type {
        if !self.general.is_match(national) {
            return Type::Unknown;
        }
        let matches = |p: &Option<Pattern>| p.as_ref().is_some_and(|p| p.is_match(national));
        if let Some((_, kind)) = self.special.iter().find(|(p, _)| p.is_match(national)) {
            return *kind;
        }
        if matches(&self.fixed_line) {
            return if self.fixed_line_is_mobile || matches(&self.mobile) {
                Type::FixedLineOrMobile
            } else {
                Type::FixedLine
            };
        }
        if matches(&self.mobile) {
            return Type::Mobile;
        }
        Type::Unknown
    }
}

/// The metadata's patterns are written with insignificant whitespace, as
/// the crate compiles them.
pub(crate) fn compile(source: &str) -> Option<Regex> {
    RegexBuilder::new(source)
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// Compiled plans by country code, then region id ("001" is shared by the
/// non-geographic codes, so the code is part of the key). Read without a
/// lock; a plan seen for the first time is compiled and the map replaced.
type Compiled = HashMap<u16, Vec<(Box<str>, Arc<PlanPatterns>)>>;

static COMPILED: LazyLock<ArcSwap<Compiled>> = LazyLock::new(Default::default);

fn with_patterns<R>(plan: &Metadata, f: impl FnOnce(&PlanPatterns) -> R) -> R {
    let (code, id) = (plan.country_code(), plan.id());
    {
        let compiled = COMPILED.load();
        if let Some(patterns) = lookup(&compiled, code, id) {
            return f(patterns);
        }
    }
    let fresh = Arc::new(PlanPatterns::new(plan));
    COMPILED.rcu(|compiled| {
        let mut next = Compiled::clone(compiled);
        if lookup(&next, code, id).is_none() {
            let plans = next.entry(code).or_default();
            plans.push((id.into(), Arc::clone(&fresh)));
        }
        next
    });
    f(&fresh)
}

fn lookup<'c>(compiled: &'c Compiled, code: u16, id: &str) -> Option<&'c PlanPatterns> {
    let plans = compiled.get(&code)?;
    let (_, patterns) = plans.iter().find(|(known, _)| **known == *id)?;
    Some(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every descriptor of `plan` that types a number.
    fn descriptors(plan: &Metadata) -> Vec<&Descriptor> {
        let d = plan.descriptors();
        [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every example number of every plan, as an international number.
    fn examples(database: &Database) -> Vec<(String, PhoneNumber)> {
        let mut out = Vec::new();
        for plan in database.iter() {
            for example in descriptors(plan)
                .into_iter()
                .filter_map(Descriptor::example)
            {
                let raw = format!("+{} {example}", plan.country_code());
                if let Ok(number) = phonenumber::parse(None, &raw) {
                    out.push((raw, number));
                }
            }
        }
        out
    }

    #[test]
    fn plans_and_types_are_the_crates_where_it_reads_numbers_whole() {
        let database = &phonenumber::metadata::DATABASE;
        let (mut same, mut zeros) = (0, 0);
        for (raw, number) in examples(database) {
            let ours = plan_of(database, &number);
            let valid = ours.is_some_and(|(_, kind)| kind != Type::Unknown);
            // Validity agrees with the crate's `is_valid_with` everywhere.
            assert_eq!(
                valid,
                phonenumber::is_valid_with(database, &number),
                "{raw}"
            );
            if number.national().zeros() > 0 {
                zeros += 1;
                continue;
            }
            // Without leading zeros, plan and type are the crate's.
            let theirs = number.metadata(database).map(|m| m.id());
            assert_eq!(ours.map(|(plan, _)| plan.id()), theirs, "{raw}");
            assert_eq!(
                ours.map_or(Type::Unknown, |(_, t)| t),
                number.number_type(database),
                "{raw}"
            );
            same += 1;
        }
        assert!(same > 1_000, "{same} examples compared");
        assert!(zeros > 10, "{zeros} examples with leading zeros");
    }

    #[test]
    fn every_plans_patterns_compile() {
        let database = &phonenumber::metadata::DATABASE;
        let mut plans = 0;
        for plan in database.iter() {
            let p = PlanPatterns::new(plan);
            let all = [Some(&p.general), p.fixed_line.as_ref(), p.mobile.as_ref()]
                .into_iter()
                .flatten()
                .chain(p.special.iter().map(|(p, _)| p));
            for pattern in all {
                assert!(
                    pattern.regex.is_some(),
                    "{} +{}",
                    plan.id(),
                    plan.country_code()
                );
            }
            assert_eq!(p.leading_digits.is_some(), plan.leading_digits().is_some());
            plans += 1;
        }
        assert!(plans > 200, "{plans} plans");
    }

    /// The crate keeps a match that starts at the number's first digit;
    /// libphonenumber, and this module, match the number whole. So a number
    /// the patterns match here the crate matches too, and the crate's
    /// extra matches are the numbers a pattern matches a prefix of.
    #[test]
    fn descriptors_match_whole_numbers_where_the_crate_matched_prefixes() {
        let database = &phonenumber::metadata::DATABASE;
        let (mut compared, mut by_prefix) = (0, 0);
        for plan in database.iter() {
            let descriptors = descriptors(plan);
            let examples = descriptors.iter().filter_map(|d| d.example());
            // Each example, one digit longer and one shorter.
            let numbers: Vec<String> = examples
                .flat_map(|e| [e.to_string(), format!("{e}0"), e[..e.len() - 1].to_string()])
                .collect();
            for descriptor in &descriptors {
                let ours = Pattern::new(descriptor);
                for number in &numbers {
                    let (here, crate_) = (ours.is_match(number), descriptor.is_match(number));
                    compared += 1;
                    if here == crate_ {
                        continue;
                    }
                    assert!(crate_, "{} {number}: matched here only", plan.id());
                    let source = descriptor.national_number().as_str();
                    let prefix = compile(&format!("^(?:{source})")).unwrap();
                    assert!(prefix.is_match(number), "{} {number}", plan.id());
                    by_prefix += 1;
                }
            }
        }
        assert!(compared > 15_000, "{compared} compared");
        eprintln!("{by_prefix} of {compared} matched by prefix only");
    }

    /// One digit longer than a valid number: the crate found a pattern
    /// matching the number's first digits and called it valid;
    /// libphonenumber (its Python port, phonenumbers 9.0.43) does not.
    #[test]
    fn a_number_a_pattern_matches_only_the_start_of_is_not_valid() {
        let database = &phonenumber::metadata::DATABASE;
        for raw in ["+84 1992 0000", "+49 900 1234567 0", "+385 1 2345678 0"] {
            let number = phonenumber::parse(None, raw).unwrap();
            assert!(phonenumber::is_valid_with(database, &number), "{raw}");
            let found = plan_of(database, &number).map(|(_, kind)| kind);
            assert!(
                matches!(found, None | Some(Type::Unknown)),
                "{raw}: {found:?}"
            );
        }
    }

    #[test]
    fn numbers_with_leading_zeros_have_their_plans_type() {
        let database = &phonenumber::metadata::DATABASE;
        for (raw, region, kind) in [
            ("+39 02 1234 5678", "IT", Type::FixedLine),
            ("+39 06 4880 0000", "IT", Type::FixedLine),
            // The Vatican's numbers sit inside Rome's range, found by the
            // Vatican plan's leading digits.
            ("+39 06 6982 0000", "VA", Type::FixedLine),
            ("+39 312 345 6789", "IT", Type::Mobile),
            ("+225 07 01 23 45 67", "CI", Type::Mobile),
            ("+225 21 23 45 67 89", "CI", Type::FixedLine),
            ("+378 0549 886377", "SM", Type::FixedLine),
        ] {
            let number = phonenumber::parse(None, raw).unwrap();
            let (plan, found) = plan_of(database, &number).unwrap();
            assert_eq!((plan.id(), found), (region, kind), "{raw}");
        }
    }
}
