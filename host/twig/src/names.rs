//! Checks of the names the host takes from its flags, its board profile
//! and the lattice: lattice names and JetStream domains, subject prefixes,
//! server URLs, label keys. A leaf: the board, the uplink and the control
//! interface all check with these, so each name means the same everywhere.

/// Checks a lattice name or a JetStream domain: both end up as subject
/// tokens (`wasmbus.ctl.v1.{lattice}.…`, `$JS.{domain}.API.…`) and in
/// bucket names, so they are letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("`{name}` must be 1 to 128 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "`{name}` holds `{c}`; use letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Checks a control subject prefix (`wasmbus.ctl`): dot-separated tokens
/// of letters, digits, `-` and `_`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 128 {
        return Err(format!("`{prefix}` must be 1 to 128 characters"));
    }
    for token in prefix.split('.') {
        check_name(token).map_err(|e| format!("`{prefix}`: {e}"))?;
    }
    Ok(())
}

/// Checks a server URL list as `--nats-url` takes it: comma-separated
/// `nats://`, `tls://`, `ws://` or `wss://` URLs (or bare `HOST:PORT`),
/// each with a host and, if given, a numeric port.
pub fn check_url(urls: &str) -> Result<(), String> {
    if urls.trim().is_empty() {
        return Err("no server URL".into());
    }
    for url in urls.split(',').map(str::trim) {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return Err(format!(
                        "`{url}`: scheme `{scheme}` is not nats, tls, ws or wss"
                    ));
                }
                rest
            }
            None => url,
        };
        // Credentials in the URL (`user:pass@`) are allowed by NATS clients.
        let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let hostport = hostport.split('/').next().unwrap_or_default();
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
                None => return Err(format!("`{url}`: unclosed `[`")),
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err(format!("`{url}` names no host"));
        }
        if let Some(p) = port {
            if p.parse::<u16>().is_err() {
                return Err(format!("`{url}`: port `{p}` is not a number up to 65535"));
            }
        }
    }
    Ok(())
}

pub fn parse_label(arg: &str) -> Result<(String, String), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("--label `{arg}`: expected KEY=VALUE"))?;
    check_label_key(k).map_err(|e| format!("--label `{arg}`: {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A label key as the profile and `--label` accept it: not empty, no
/// whitespace, no `=`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c == '=') {
        return Err(format!(
            "`{key}` is not a valid label key (no spaces or `=`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lattice_names_and_urls_are_checked() {
        for ok in ["default", "edge-01", "a_b", "0f3c"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "a.b", "a b", "a>", "*", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "nats://127.0.0.1:4222",
            "tls://leaf.local:7422",
            "leaf:4222",
            "nats://a:1,tls://b:2",
            "nats://u:p@host:4222",
            "wss://[::1]:443",
            "nats://[::1]",
        ] {
            check_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "http://x:1",
            "nats://:4222",
            "nats://h:port",
            "nats://h:70000",
            "nats://[::1",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_label("site=north").unwrap(),
            ("site".into(), "north".into())
        );
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("nokey")
            .unwrap_err()
            .contains("expected KEY=VALUE"));
        assert!(parse_label("=x")
            .unwrap_err()
            .contains("not a valid label key"));
        assert!(parse_label("a b=x")
            .unwrap_err()
            .contains("not a valid label key"));
    }
}
