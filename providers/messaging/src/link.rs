//! The link config wasmCloud's messaging-nats provider reads, so a wadm
//! manifest written for it configures twig's bus the same way.
//!
//! In wasmCloud 1.x (`crates/core/src/messaging.rs`, used by
//! `crates/provider-messaging-nats`) the provider-to-component `handler`
//! link's source config holds `subscriptions`: a comma-separated list of
//! subjects, each optionally followed by `|queue-group`. Example:
//! `subscriptions: "sensors.*.temp,jobs.>|workers"`. The other keys it
//! reads (`cluster_uris`, `client_jwt`, `client_seed`, `tls_ca`,
//! `custom_inbox_prefix`, `consumers`) configure the NATS connection and
//! have no meaning for the in-process bus; the lattice bridge may use them
//! later.

use crate::subject::{validate_pattern, SubjectError};

/// The link config key holding the subscriptions.
pub const CONFIG_SUBSCRIPTIONS: &str = "subscriptions";

/// One entry of a `subscriptions` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub pattern: String,
    pub queue_group: Option<String>,
}

/// Parses a `subscriptions` value: `"a.b,c.>|group"`.
///
/// Empty entries are skipped, as wasmCloud does. Unlike wasmCloud, spaces
/// around entries and around `|` are trimmed (`"a.b, c.>"` would otherwise
/// be an invalid subject with a leading space), and every pattern is
/// validated here so a bad manifest fails when it is applied, naming the
/// pattern, rather than when the first message arrives. An empty queue
/// group (`"a.b|"`) means none.
pub fn parse_subscriptions(value: &str) -> Result<Vec<SubscriptionSpec>, SubjectError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (pattern, group) = match entry.split_once('|') {
                Some((p, g)) => (p.trim(), Some(g.trim())),
                None => (entry, None),
            };
            validate_pattern(pattern)?;
            Ok(SubscriptionSpec {
                pattern: pattern.to_string(),
                queue_group: group.filter(|g| !g.is_empty()).map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str, g: Option<&str>) -> SubscriptionSpec {
        SubscriptionSpec {
            pattern: p.into(),
            queue_group: g.map(Into::into),
        }
    }

    #[test]
    fn parses_wasmcloud_style_lists() {
        assert_eq!(parse_subscriptions("").unwrap(), []);
        assert_eq!(
            parse_subscriptions("wasmcloud.echo").unwrap(),
            [spec("wasmcloud.echo", None)]
        );
        assert_eq!(
            parse_subscriptions("a.b,c.>|workers").unwrap(),
            [spec("a.b", None), spec("c.>", Some("workers"))]
        );
        assert_eq!(
            parse_subscriptions(" a.b , ,sensors.*.temp | q ,x|").unwrap(),
            [
                spec("a.b", None),
                spec("sensors.*.temp", Some("q")),
                spec("x", None)
            ]
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        let e = parse_subscriptions("ok,a..b").unwrap_err();
        assert_eq!(e.subject, "a..b");
        assert!(parse_subscriptions(">.a").is_err());
        assert!(parse_subscriptions("a b|q").is_err());
    }
}
