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

use phonenumber::{
    PhoneNumber, Type,
    metadata::{Database, Descriptor, Metadata},
};

/// The plan of the region `number` belongs to, and the number's type in it;
/// `None` if no region of its country code has it. A number of a plan whose
/// patterns it does not match has the type `Unknown`: not a valid number.
pub fn plan_of<'d>(database: &'d Database, number: &PhoneNumber) -> Option<(&'d Metadata, Type)> {
    let national = number.national().to_string();
    let code = number.code().value();
    let regions = database.region(&code)?;
    if let [only] = regions.as_slice() {
        // "001" stands for the plan of a non-geographic code (+800, +882...).
        let plan = if *only == "001" {
            database.by_code(&code)?.into_iter().next()?
        } else {
            database.by_id(*only)?
        };
        return Some((plan, number_type(plan, &national)));
    }
    // Codes shared by several regions (+1, +7, +44...): the first region
    // whose leading digits the number starts with, or, for a region without
    // leading digits (the code's main country), whose patterns it matches.
    for region in regions {
        let plan = database.by_id(region)?;
        match plan.leading_digits() {
            Some(leading) => {
                if leading.find(&national).is_some_and(|m| m.start() == 0) {
                    return Some((plan, number_type(plan, &national)));
                }
            }
            None => {
                let kind = number_type(plan, &national);
                if kind != Type::Unknown {
                    return Some((plan, kind));
                }
            }
        }
    }
    None
}

/// The type of the national significant number `national` (leading zeros
/// included) in `plan`, in libphonenumber's order: the special services
/// first, then fixed line and mobile, which share their pattern in plans
/// that do not tell them apart (the NANP's).
fn number_type(plan: &Metadata, national: &str) -> Type {
    let d = plan.descriptors();
    if !d.general().is_match(national) {
        return Type::Unknown;
    }
    let matches =
        |descriptor: Option<&Descriptor>| descriptor.is_some_and(|d| d.is_match(national));
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
    if let Some((_, kind)) = special.into_iter().find(|(d, _)| matches(*d)) {
        return kind;
    }
    if matches(d.fixed_line()) {
        let same_pattern = d.fixed_line().map(|d| d.national_number().as_str())
            == d.mobile().map(|d| d.national_number().as_str());
        return if same_pattern || matches(d.mobile()) {
            Type::FixedLineOrMobile
        } else {
            Type::FixedLine
        };
    }
    if matches(d.mobile()) {
        return Type::Mobile;
    }
    Type::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example number of every plan, as an international number.
    fn examples(database: &Database) -> Vec<(String, PhoneNumber)> {
        let mut out = Vec::new();
        for plan in database.iter() {
            let d = plan.descriptors();
            let all = [
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
            ];
            for example in all.into_iter().flatten().filter_map(Descriptor::example) {
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
