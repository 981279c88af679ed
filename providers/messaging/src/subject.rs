//! NATS subjects: validation of publish subjects and subscription patterns,
//! and wildcard matching.
//!
//! The rules are nats-server's, so that a subject accepted here is accepted
//! by a real NATS server once the bus is bridged to a lattice, and a pattern
//! matches the same subjects on both sides:
//!
//! * A subject is tokens separated by `.`; no token may be empty (`a..b`,
//!   `.a`, `a.` are invalid).
//! * No token may contain a space, tab, CR, LF or form feed (the NATS
//!   protocol is line- and space-delimited), nor a NUL byte (nats-server
//!   rejects those where it checks subjects strictly).
//! * `*` and `>` are wildcards only when they are a *whole* token. `a*.b`
//!   or `a>` are ordinary literal tokens, as in nats-server.
//! * In a subscription pattern, `*` matches exactly one token and `>`
//!   matches one or more tokens; `>` may only be the last token.
//! * A publish subject (and a reply subject) must be literal: no wildcard
//!   tokens.
//!
//! twig adds one limit NATS leaves to the connection's control-line size:
//! a subject is at most [`MAX_SUBJECT_LEN`] bytes, so a subject and a reply
//! subject always fit nats-server's default 4 KiB control line when the bus
//! is bridged.

use std::fmt;

/// The longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// What was being validated; only changes the wording of errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectRole {
    /// A subject a message is published to, or a reply subject.
    Publish,
    /// A subscription pattern, which may hold wildcards.
    Pattern,
}

/// Why a subject or pattern is invalid. Token positions are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectErrorKind {
    Empty,
    TooLong {
        len: usize,
        max: usize,
    },
    EmptyToken {
        position: usize,
    },
    Whitespace {
        position: usize,
    },
    Nul {
        position: usize,
    },
    /// A `*` or `>` token in a publish subject.
    Wildcard {
        position: usize,
        wildcard: char,
    },
    /// A `>` token that is not the last one.
    FullWildcardNotLast {
        position: usize,
    },
}

/// An invalid subject or pattern, with the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectError {
    pub subject: String,
    pub role: SubjectRole,
    pub kind: SubjectErrorKind,
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.role {
            SubjectRole::Publish => "subject",
            SubjectRole::Pattern => "subscription pattern",
        };
        // Debug-quote so whitespace and control characters are visible.
        write!(f, "invalid {what} {:?}: ", self.subject)?;
        match &self.kind {
            SubjectErrorKind::Empty => f.write_str("empty"),
            SubjectErrorKind::TooLong { len, max } => {
                write!(f, "{len} bytes long, over the limit of {max}")
            }
            SubjectErrorKind::EmptyToken { position } => {
                write!(f, "empty token at position {position}")
            }
            SubjectErrorKind::Whitespace { position } => {
                write!(f, "whitespace in token at position {position}")
            }
            SubjectErrorKind::Nul { position } => {
                write!(f, "NUL byte in token at position {position}")
            }
            SubjectErrorKind::Wildcard { position, wildcard } => write!(
                f,
                "wildcard `{wildcard}` at position {position} (a message is published to a literal subject; wildcards are for subscriptions)"
            ),
            SubjectErrorKind::FullWildcardNotLast { position } => write!(
                f,
                "`>` at position {position} must be the last token"
            ),
        }
    }
}

impl std::error::Error for SubjectError {}

/// The characters nats-server refuses inside a token.
fn is_nats_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c)
}

/// The checks shared by subjects and patterns; `on_wildcard` decides what a
/// whole-token `*`/`>` at a 1-based position means.
fn check(
    s: &str,
    role: SubjectRole,
    mut on_wildcard: impl FnMut(usize, char, bool) -> Option<SubjectErrorKind>,
) -> Result<(), SubjectError> {
    let err = |kind| {
        Err(SubjectError {
            subject: s.to_string(),
            role,
            kind,
        })
    };
    if s.is_empty() {
        return err(SubjectErrorKind::Empty);
    }
    if s.len() > MAX_SUBJECT_LEN {
        return err(SubjectErrorKind::TooLong {
            len: s.len(),
            max: MAX_SUBJECT_LEN,
        });
    }
    let count = s.split('.').count();
    for (i, token) in s.split('.').enumerate() {
        let position = i + 1;
        if token.is_empty() {
            return err(SubjectErrorKind::EmptyToken { position });
        }
        if token.bytes().any(is_nats_whitespace) {
            return err(SubjectErrorKind::Whitespace { position });
        }
        if token.bytes().any(|b| b == 0) {
            return err(SubjectErrorKind::Nul { position });
        }
        if token == "*" || token == ">" {
            let wildcard = if token == "*" { '*' } else { '>' };
            if let Some(kind) = on_wildcard(position, wildcard, position == count) {
                return err(kind);
            }
        }
    }
    Ok(())
}

/// Checks a subject to publish to (or a reply subject): literal tokens only.
pub fn validate_subject(subject: &str) -> Result<(), SubjectError> {
    check(subject, SubjectRole::Publish, |position, wildcard, _| {
        Some(SubjectErrorKind::Wildcard { position, wildcard })
    })
}

/// Checks a subscription pattern: `*` anywhere as a whole token, `>` only
/// as the last token.
pub fn validate_pattern(pattern: &str) -> Result<(), SubjectError> {
    check(pattern, SubjectRole::Pattern, |position, wildcard, last| {
        (wildcard == '>' && !last).then_some(SubjectErrorKind::FullWildcardNotLast { position })
    })
}

/// Whether `subject` matches `pattern` under NATS rules.
///
/// Neither argument is validated (do that on the way in with
/// [`validate_pattern`] and [`validate_subject`]); on invalid input the
/// answer is simply the token-wise comparison, and nothing panics. A
/// wildcard token in `subject` is compared literally.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            // `>` needs at least one token to swallow, which `s.next()`
            // being `Some` guarantees.
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// One token of a parsed [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`
    One,
    /// `>`
    Rest,
}

/// A validated subscription pattern, tokenised once so matching a message
/// against many subscriptions does not re-split the pattern each time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    tokens: Vec<Token>,
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Pattern, SubjectError> {
        validate_pattern(pattern)?;
        let tokens = pattern
            .split('.')
            .map(|t| match t {
                "*" => Token::One,
                ">" => Token::Rest,
                lit => Token::Literal(lit.to_string()),
            })
            .collect();
        Ok(Pattern {
            raw: pattern.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the pattern has no wildcard tokens.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Same answer as [`matches()`]`(self.as_str(), subject)`.
    pub fn matches(&self, subject: &str) -> bool {
        let mut s = subject.split('.');
        for t in &self.tokens {
            match (t, s.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(l), Some(st)) if l == st => {}
                _ => return false,
            }
        }
        s.next().is_none()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        let ok = [
            "a",
            "a.b",
            "sensors.room1.temp",
            "_INBOX.abc",
            "$SYS.REQ.SERVER.PING",
            "a*.b",
            "a>",
            "*a",
            "a.b>c",
            "ünïcödé.ok",
            "a-b_c~d",
        ];
        for s in ok {
            assert_eq!(validate_subject(s), Ok(()), "{s}");
            assert_eq!(validate_pattern(s), Ok(()), "{s}");
        }
        let bad: &[(&str, SubjectErrorKind)] = &[
            ("", SubjectErrorKind::Empty),
            (".", SubjectErrorKind::EmptyToken { position: 1 }),
            (".a", SubjectErrorKind::EmptyToken { position: 1 }),
            ("a.", SubjectErrorKind::EmptyToken { position: 2 }),
            ("a..b", SubjectErrorKind::EmptyToken { position: 2 }),
            ("a b", SubjectErrorKind::Whitespace { position: 1 }),
            ("a.b\tc", SubjectErrorKind::Whitespace { position: 2 }),
            ("a.\n", SubjectErrorKind::Whitespace { position: 2 }),
            ("a.b\r", SubjectErrorKind::Whitespace { position: 2 }),
            ("\x0c", SubjectErrorKind::Whitespace { position: 1 }),
            ("a.b\0", SubjectErrorKind::Nul { position: 2 }),
            (
                "*",
                SubjectErrorKind::Wildcard {
                    position: 1,
                    wildcard: '*',
                },
            ),
            (
                "a.*.c",
                SubjectErrorKind::Wildcard {
                    position: 2,
                    wildcard: '*',
                },
            ),
            (
                "a.>",
                SubjectErrorKind::Wildcard {
                    position: 2,
                    wildcard: '>',
                },
            ),
        ];
        for (s, kind) in bad {
            let e = validate_subject(s).unwrap_err();
            assert_eq!(&e.kind, kind, "{s:?}");
            assert_eq!(e.subject, *s);
        }
    }

    #[test]
    fn patterns() {
        for p in ["*", ">", "a.*", "a.>", "*.*.>", "a.*.c", "*.b.*", "a*.>"] {
            assert_eq!(validate_pattern(p), Ok(()), "{p}");
            assert!(Pattern::parse(p).is_ok());
        }
        let bad: &[(&str, SubjectErrorKind)] = &[
            ("", SubjectErrorKind::Empty),
            (">.a", SubjectErrorKind::FullWildcardNotLast { position: 1 }),
            (
                "a.>.b",
                SubjectErrorKind::FullWildcardNotLast { position: 2 },
            ),
            (">.>", SubjectErrorKind::FullWildcardNotLast { position: 1 }),
            ("a.*.", SubjectErrorKind::EmptyToken { position: 3 }),
            ("a. *", SubjectErrorKind::Whitespace { position: 2 }),
        ];
        for (p, kind) in bad {
            assert_eq!(&validate_pattern(p).unwrap_err().kind, kind, "{p:?}");
        }
    }

    #[test]
    fn length_limit() {
        let at = "a".repeat(MAX_SUBJECT_LEN);
        assert!(validate_subject(&at).is_ok());
        let over = "a".repeat(MAX_SUBJECT_LEN + 1);
        assert_eq!(
            validate_subject(&over).unwrap_err().kind,
            SubjectErrorKind::TooLong {
                len: MAX_SUBJECT_LEN + 1,
                max: MAX_SUBJECT_LEN
            }
        );
        assert!(validate_pattern(&over).is_err());
    }

    #[test]
    fn messages() {
        let e = validate_subject("a..b").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid subject "a..b": empty token at position 2"#
        );
        let e = validate_pattern("a.>.b").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid subscription pattern "a.>.b": `>` at position 2 must be the last token"#
        );
        let e = validate_subject("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid subject "a b": whitespace in token at position 1"#
        );
        assert!(validate_subject("x.*")
            .unwrap_err()
            .to_string()
            .contains("wildcard `*` at position 2"));
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("a", "a", true),
            ("a", "b", false),
            ("a", "a.b", false),
            ("a.b", "a", false),
            ("a.b", "a.b", true),
            ("*", "a", true),
            ("*", "a.b", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("a.>", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "b.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("*.b", "a.b", true),
            ("*.b", "a.c", false),
            ("sensors.*.temp", "sensors.kitchen.temp", true),
            ("sensors.*.temp", "sensors.kitchen.humidity", false),
            ("sensors.*.temp", "sensors.a.b.temp", false),
            ("sensors.>", "sensors.kitchen.temp", true),
            ("sensors.>", "sensors", false),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("*.>", "a.b", true),
            ("*.>", "a", false),
            // Wildcards are wildcards only as whole tokens.
            ("a*", "a*", true),
            ("a*", "ab", false),
            ("a*.b", "ab.b", false),
            ("a>", "a.b", false),
            ("a>", "a>", true),
            // Case-sensitive.
            ("A.b", "a.b", false),
        ];
        for (p, s, want) in table {
            assert_eq!(matches(p, s), *want, "matches({p:?}, {s:?})");
            let parsed = Pattern::parse(p).unwrap();
            assert_eq!(parsed.matches(s), *want, "Pattern({p:?}).matches({s:?})");
        }
    }

    /// A small deterministic generator, so the property tests need no
    /// dependency and replay the same cases every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Literal tokens from a tiny alphabet so random patterns and subjects
    /// collide often enough to exercise both answers.
    fn literal(rng: &mut Rng) -> String {
        ["a", "b", "c", "ab", "a*", "b>"][rng.below(6)].to_string()
    }

    fn subject_tokens(rng: &mut Rng) -> Vec<String> {
        (0..1 + rng.below(4)).map(|_| literal(rng)).collect()
    }

    fn pattern_tokens(rng: &mut Rng) -> Vec<String> {
        let n = 1 + rng.below(4);
        (0..n)
            .map(|i| match rng.below(5) {
                0 => "*".to_string(),
                1 if i == n - 1 => ">".to_string(),
                _ => literal(rng),
            })
            .collect()
    }

    /// The matching rule written as the NATS docs state it, recursively
    /// over token slices: an independent oracle for `matches`.
    fn oracle(p: &[String], s: &[String]) -> bool {
        match (p.split_first(), s.split_first()) {
            (None, None) => true,
            (Some((pt, _)), Some(_)) if pt == ">" => true,
            (Some((pt, pr)), Some((st, sr))) => (pt == "*" || pt == st) && oracle(pr, sr),
            _ => false,
        }
    }

    #[test]
    fn property_matches_agrees_with_oracle() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut hits = 0;
        for _ in 0..20_000 {
            let p = pattern_tokens(&mut rng);
            let s = subject_tokens(&mut rng);
            let (pj, sj) = (p.join("."), s.join("."));
            assert_eq!(validate_pattern(&pj), Ok(()), "{pj}");
            assert_eq!(validate_subject(&sj), Ok(()), "{sj}");
            let want = oracle(&p, &s);
            assert_eq!(matches(&pj, &sj), want, "matches({pj:?}, {sj:?})");
            assert_eq!(Pattern::parse(&pj).unwrap().matches(&sj), want);
            hits += want as usize;
        }
        // Both outcomes must be well represented for the test to mean much.
        assert!(hits > 1_000 && hits < 19_000, "hits = {hits}");
    }

    #[test]
    fn property_derived_patterns_match() {
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let s = subject_tokens(&mut rng);
            let sj = s.join(".");
            // A subject matches itself, literally.
            assert!(matches(&sj, &sj));
            assert!(Pattern::parse(&sj).unwrap().is_literal());
            // Any token replaced by `*` still matches.
            let mut p = s.clone();
            p[rng.below(s.len())] = "*".into();
            assert!(matches(&p.join("."), &sj), "{p:?} vs {sj}");
            // Any proper prefix followed by `>` matches; the whole subject
            // followed by `>` does not (`>` needs at least one token).
            let k = rng.below(s.len());
            let mut prefix = s[..k].to_vec();
            prefix.push(">".into());
            assert!(matches(&prefix.join("."), &sj), "{prefix:?} vs {sj}");
            let mut longer = s.clone();
            longer.push(">".into());
            assert!(!matches(&longer.join("."), &sj));
            // One more or one fewer token never matches a literal pattern.
            let mut extra = s.clone();
            extra.push(literal(&mut rng));
            assert!(!matches(&sj, &extra.join(".")));
            assert!(!matches(&extra.join("."), &sj));
        }
    }

    #[test]
    fn property_validation_agrees_with_char_scan() {
        // Random strings over an alphabet that includes every character the
        // rules care about; the oracle re-states the rules as a scan.
        let alphabet = ['a', 'b', '.', '*', '>', ' ', '\t', '\0', 'é'];
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let len = rng.below(7);
            let s: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let tokens: Vec<&str> = s.split('.').collect();
            let clean = !s.is_empty()
                && tokens
                    .iter()
                    .all(|t| !t.is_empty() && !t.contains([' ', '\t', '\r', '\n', '\x0c', '\0']));
            let literal_ok = clean && tokens.iter().all(|t| *t != "*" && *t != ">");
            let pattern_ok = clean
                && tokens
                    .iter()
                    .enumerate()
                    .all(|(i, t)| *t != ">" || i == tokens.len() - 1);
            assert_eq!(validate_subject(&s).is_ok(), literal_ok, "{s:?}");
            assert_eq!(validate_pattern(&s).is_ok(), pattern_ok, "{s:?}");
        }
    }

    #[test]
    fn matches_is_total_on_garbage() {
        for (p, s) in [("", ""), ("", "a"), ("a..b", "a..b"), (">", ""), ("*", "")] {
            let _ = matches(p, s);
        }
    }
}
