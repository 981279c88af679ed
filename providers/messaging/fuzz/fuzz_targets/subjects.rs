//! Subject and pattern validation, wildcard matching and the
//! `subscriptions` link config, against restatements of the NATS rules.
//!
//! The input is split at its first 0xFF byte into a pattern and a subject
//! (0xFF never occurs in UTF-8, so every character the rules care about,
//! NUL and newline included, can appear on both sides); each side is read
//! as lossy UTF-8. Whatever the input, nothing may panic, and:
//!
//! * `validate_subject` / `validate_pattern` accept exactly what a plain
//!   scan of the rules accepts, and an error names the first offending
//!   token, carries the input unchanged, and displays it Debug-quoted;
//! * `Pattern::parse` agrees with `validate_pattern`, keeps the text, is
//!   literal exactly when the text is a valid publish subject, and matches
//!   exactly what `matches` does;
//! * `matches` agrees with the token-wise rule (recursive oracle); a valid
//!   literal pattern matches exactly the equal subject; `>` matches every
//!   valid subject; a match between a valid pattern and a valid subject
//!   has equal token counts without `>` and at least as many subject
//!   tokens with it; a valid subject matches itself, itself with one token
//!   turned into `*`, and any proper prefix of itself followed by `>`;
//! * `parse_subscriptions` agrees with validating each trimmed entry, and
//!   what it returns is trimmed, valid, and survives being written back
//!   out and parsed again.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use twig_messaging::{
    matches, parse_subscriptions, validate_pattern, validate_subject, Pattern, SubjectError,
    SubjectErrorKind, SubjectRole, SubscriptionSpec, MAX_SUBJECT_LEN,
};

const NATS_WHITESPACE: [char; 5] = [' ', '\t', '\r', '\n', '\x0c'];

fn token_is_clean(t: &str) -> bool {
    !t.is_empty() && !t.contains(NATS_WHITESPACE) && !t.contains('\0')
}

/// The rules, restated as a scan: (valid subject, valid pattern).
fn oracle_valid(s: &str) -> (bool, bool) {
    let tokens: Vec<&str> = s.split('.').collect();
    let clean =
        !s.is_empty() && s.len() <= MAX_SUBJECT_LEN && tokens.iter().all(|t| token_is_clean(t));
    let subject = clean && tokens.iter().all(|t| *t != "*" && *t != ">");
    let pattern = clean
        && tokens
            .iter()
            .enumerate()
            .all(|(i, t)| *t != ">" || i + 1 == tokens.len());
    (subject, pattern)
}

/// The matching rule as the NATS docs state it, recursively over tokens.
fn oracle_match(p: &[&str], s: &[&str]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((&">", _)), Some(_)) => true,
        (Some((pt, pr)), Some((st, sr))) => (*pt == "*" || pt == st) && oracle_match(pr, sr),
        _ => false,
    }
}

/// An error must describe `input` as validated in `role`: unchanged text,
/// Debug-quoted in the message, and the first offending token's position.
fn check_error(input: &str, role: SubjectRole, e: &SubjectError) {
    assert_eq!(e.subject, input);
    assert_eq!(e.role, role);
    let msg = e.to_string();
    let what = match role {
        SubjectRole::Publish => "subject",
        SubjectRole::Pattern => "subscription pattern",
    };
    assert!(
        msg.starts_with(&format!("invalid {what} {input:?}: ")),
        "{msg:?} does not quote {input:?}"
    );
    let tokens: Vec<&str> = input.split('.').collect();
    let offending = |i: usize, t: &str| -> bool {
        !token_is_clean(t)
            || match role {
                SubjectRole::Publish => t == "*" || t == ">",
                SubjectRole::Pattern => t == ">" && i + 1 != tokens.len(),
            }
    };
    let position = match &e.kind {
        SubjectErrorKind::Empty => {
            assert!(input.is_empty());
            return;
        }
        SubjectErrorKind::TooLong { len, max } => {
            assert_eq!((*len, *max), (input.len(), MAX_SUBJECT_LEN));
            assert!(input.len() > MAX_SUBJECT_LEN);
            return;
        }
        SubjectErrorKind::EmptyToken { position } => {
            assert!(tokens[position - 1].is_empty());
            *position
        }
        SubjectErrorKind::Whitespace { position } => {
            let t = tokens[position - 1];
            assert!(!t.is_empty() && t.contains(NATS_WHITESPACE));
            *position
        }
        SubjectErrorKind::Nul { position } => {
            let t = tokens[position - 1];
            assert!(!t.is_empty() && !t.contains(NATS_WHITESPACE) && t.contains('\0'));
            *position
        }
        SubjectErrorKind::Wildcard { position, wildcard } => {
            assert_eq!(role, SubjectRole::Publish);
            assert_eq!(tokens[position - 1], wildcard.to_string());
            *position
        }
        SubjectErrorKind::FullWildcardNotLast { position } => {
            assert_eq!(role, SubjectRole::Pattern);
            assert_eq!(tokens[position - 1], ">");
            assert!(*position < tokens.len());
            *position
        }
    };
    assert!(!input.is_empty() && input.len() <= MAX_SUBJECT_LEN);
    assert!(position >= 1 && position <= tokens.len());
    for (i, t) in tokens[..position - 1].iter().enumerate() {
        assert!(!offending(i, t), "token {} of {input:?} is bad too", i + 1);
    }
}

fn check_validation(s: &str) -> (bool, bool) {
    let (want_subject, want_pattern) = oracle_valid(s);
    let subject = validate_subject(s);
    let pattern = validate_pattern(s);
    assert_eq!(subject.is_ok(), want_subject, "validate_subject({s:?})");
    assert_eq!(pattern.is_ok(), want_pattern, "validate_pattern({s:?})");
    if let Err(e) = &subject {
        check_error(s, SubjectRole::Publish, e);
    }
    if let Err(e) = &pattern {
        check_error(s, SubjectRole::Pattern, e);
    }
    match Pattern::parse(s) {
        Ok(p) => {
            assert!(want_pattern);
            assert_eq!(p.as_str(), s);
            assert_eq!(p.to_string(), s);
            assert_eq!(p.is_literal(), want_subject);
        }
        Err(e) => {
            assert!(!want_pattern);
            assert_eq!(Err(e), pattern);
        }
    }
    (want_subject, want_pattern)
}

fn check_match(p: &str, s: &str, p_subject: bool, p_pattern: bool, s_subject: bool) {
    let got = matches(p, s);
    let pt: Vec<&str> = p.split('.').collect();
    let st: Vec<&str> = s.split('.').collect();
    assert_eq!(got, oracle_match(&pt, &st), "matches({p:?}, {s:?})");
    if p_pattern {
        assert_eq!(
            Pattern::parse(p).unwrap().matches(s),
            got,
            "Pattern({p:?}).matches({s:?})"
        );
    }
    if p_subject {
        // A literal pattern is just a subject: equal text, equal tokens.
        assert_eq!(got, p == s, "literal matches({p:?}, {s:?})");
    }
    if s_subject {
        assert!(matches(">", s));
    }
    if got && p_pattern && s_subject {
        if pt.last() == Some(&">") {
            assert!(st.len() >= pt.len(), "{p:?} matched shorter {s:?}");
        } else {
            assert_eq!(st.len(), pt.len(), "{p:?} matched {s:?}");
        }
    }
}

/// A valid subject matches itself, with a token turned into `*`, and as a
/// proper prefix followed by `>`; but not followed by `>` whole.
fn check_derived(s: &str, pick: usize) {
    let st: Vec<&str> = s.split('.').collect();
    assert!(matches(s, s));
    let mut star = st.clone();
    star[pick % st.len()] = "*";
    let star = star.join(".");
    assert!(matches(&star, s), "{star:?} vs {s:?}");
    let mut prefix = st[..pick % st.len()].to_vec();
    prefix.push(">");
    let prefix = prefix.join(".");
    assert!(matches(&prefix, s), "{prefix:?} vs {s:?}");
    let longer = format!("{s}.>");
    assert!(!matches(&longer, s), "{longer:?} vs {s:?}");
    for p in [&star, &prefix] {
        if validate_pattern(p).is_ok() {
            assert!(Pattern::parse(p).unwrap().matches(s));
        }
    }
}

fn check_subscriptions(value: &str) {
    // The documented rule: entries split at `,`, trimmed, empty ones
    // skipped, `|` splits off a queue group, each pattern validated.
    let want: Result<Vec<SubscriptionSpec>, SubjectError> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (p, g) = match e.find('|') {
                Some(i) => (e[..i].trim(), Some(e[i + 1..].trim())),
                None => (e, None),
            };
            validate_pattern(p).map(|()| SubscriptionSpec {
                pattern: p.to_string(),
                queue_group: g.filter(|g| !g.is_empty()).map(String::from),
            })
        })
        .collect();
    let got = parse_subscriptions(value);
    assert_eq!(got, want, "parse_subscriptions({value:?})");
    match got {
        Ok(specs) => {
            for s in &specs {
                assert!(validate_pattern(&s.pattern).is_ok());
                assert!(!s.pattern.contains([',', '|']));
                assert_eq!(s.pattern.trim(), s.pattern);
                if let Some(g) = &s.queue_group {
                    assert!(!g.is_empty() && !g.contains(','));
                    assert_eq!(g.trim(), g);
                }
            }
            let written: Vec<String> = specs
                .iter()
                .map(|s| match &s.queue_group {
                    Some(g) => format!("{}|{g}", s.pattern),
                    None => s.pattern.clone(),
                })
                .collect();
            let again = written.join(",");
            assert_eq!(
                parse_subscriptions(&again).as_ref(),
                Ok(&specs),
                "{again:?}"
            );
        }
        Err(e) => {
            assert!(value.contains(&e.subject));
            check_error(&e.subject.clone(), SubjectRole::Pattern, &e);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (p, s) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let p = String::from_utf8_lossy(p);
    let s = String::from_utf8_lossy(s);
    let (p_subject, p_pattern) = check_validation(&p);
    let (s_subject, s_pattern) = check_validation(&s);
    check_match(&p, &s, p_subject, p_pattern, s_subject);
    check_match(&s, &p, s_subject, s_pattern, p_subject);
    check_match(&p, &p, p_subject, p_pattern, p_subject);
    for (text, valid) in [(&p, p_subject), (&s, s_subject)] {
        if valid {
            check_derived(text, data.len());
        }
    }
    check_subscriptions(&p);
    check_subscriptions(&s);
    check_subscriptions(&String::from_utf8_lossy(data));
});
