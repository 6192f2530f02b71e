use super::*;

#[test]
fn domain_examples() {
    for ok in [
        "131052-308T",
        "131052+308T",
        "010195+433X",
        "010197-100P",
        "010114A173M",
        "290296-7808",
        "290200A248A",
        "010594Y9032",
        "020516C903K",
    ] {
        assert_eq!(hetu_problem(ok), None, "{ok}");
    }
    for (bad, why) in [
        ("131052-308U", "check"),
        ("131052/308T", "century"),
        ("310252-308Y", "date"),
        ("131052-000V", "individual"),
        ("290200-101P", "date"),
        ("131052-308", "11"),
        ("13105A-308T", "DDMMYY"),
    ] {
        let p = hetu_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
        assert!(p.contains(why), "{bad}: {p}");
    }
}

#[test]
fn birth_age_and_sex_from_the_code() {
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    assert_eq!(hetu_birth_date("131052-308T"), Some(d(1952, 10, 13)));
    assert_eq!(hetu_birth_date("131052+308T"), Some(d(1852, 10, 13)));
    assert_eq!(hetu_birth_date("010114A173M"), Some(d(2014, 1, 1)));
    assert_eq!(hetu_birth_date("131052-308U"), None);
    assert_eq!(hetu_sex("131052-308T"), Some("2")); // 308 even
    assert_eq!(hetu_sex("010197-100P"), Some("2"));
    assert_eq!(hetu_sex("010195+433X"), Some("1"));
    assert_eq!(age_on(d(1952, 10, 13), d(2025, 10, 12)), Some(72));
    assert_eq!(age_on(d(1952, 10, 13), d(2025, 10, 13)), Some(73));
    assert_eq!(age_on(d(2000, 2, 29), d(2001, 2, 28)), Some(0));
    assert_eq!(age_on(d(2025, 1, 2), d(2025, 1, 1)), None);
    // A code for a birth in 2027 or later: sex is not derived.
    let later = {
        let number: u64 = 150_127_123;
        format!("150127A123{}", CHECK_CHARS[(number % 31) as usize] as char)
    };
    assert_eq!(hetu_problem(&later), None);
    assert_eq!(hetu_sex(&later), None);
    assert_eq!(hetu_birth_date(&later), Some(d(2027, 1, 15)));
}

#[test]
fn pseudonyms_normalise_the_identifier() {
    assert_eq!(
        pseudonym(b"k", " 131052-308t "),
        pseudonym(b"k", "131052-308T")
    );
}

#[test]
fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
    assert_eq!(
        pseudonym(b"k1", "131052-308T"),
        pseudonym(b"k1", "131052-308T")
    );
    assert_ne!(
        pseudonym(b"k1", "131052-308T"),
        pseudonym(b"k2", "131052-308T")
    );
    // The century sign is part of the identity.
    assert_ne!(
        pseudonym(b"k1", "010190-999K"),
        pseudonym(b"k1", "010190Y999K")
    );
    assert_eq!(pseudonym(b"k1", "x").len(), 64);
    // The standard's value: HMAC-SHA-256 of the upper-cased code, as hex (checked with
    // Python: hmac.new(b"k1", b"131052-308T", "sha256").hexdigest()).
    let mut p = Pseudonymiser::new(b"k1");
    assert_eq!(
        p.pseudonym("131052-308t"),
        "3f608fc1181e44202fb2482cf721ec6a1f28834467adc10672752173d0c8aa3d"
    );
    assert_eq!(p.pseudonym("131052-308T"), pseudonym(b"k1", " 131052-308t"));
    assert_eq!(p.pseudonym("x"), pseudonym(b"k1", "X"));
}

/// The civil day count agrees with chrono on every day of 1600–2400 and refuses days that
/// do not exist.
#[test]
fn days_since_1970_agree_with_the_calendar() {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let mut day = chrono::NaiveDate::from_ymd_opt(1600, 1, 1).unwrap();
    let last = chrono::NaiveDate::from_ymd_opt(2400, 12, 31).unwrap();
    while day <= last {
        use chrono::Datelike;
        let want = day.signed_duration_since(epoch).num_days();
        assert_eq!(
            super::days_since_1970(day.year() as u32, day.month(), day.day()),
            Some(want),
            "{day}"
        );
        day = day.succ_opt().unwrap();
    }
    for (y, m, d) in [
        (2025, 2, 29),
        (1900, 2, 29),
        (2025, 4, 31),
        (2025, 13, 1),
        (2025, 0, 1),
        (2025, 1, 0),
    ] {
        assert_eq!(super::days_since_1970(y, m, d), None, "{y}-{m}-{d}");
    }
    assert_eq!(super::days_since_1970(2000, 2, 29), Some(11_016));
}
