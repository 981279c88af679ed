//! When the user JWT of a creds file expires.
//!
//! A NATS server answers an expired user JWT with a bare `authorization
//! violation`, the same words as for a wrong key or a revoked user. twig
//! reads the JWT's `exp` claim itself (the claims are base64url JSON; the
//! signature is the server's business and is not checked here) so that it
//! can say "user JWT in FILE expired at DATE", at startup and whenever the
//! server refuses it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// The `exp` claim (seconds since the epoch) of the user JWT in creds file
/// text, or `None` if the JWT has none or can't be read (async-nats then
/// says what is wrong with the file).
pub fn user_jwt_exp(creds: &str) -> Option<i64> {
    let jwt = creds
        .split("-----BEGIN NATS USER JWT-----")
        .nth(1)?
        .split("------END NATS USER JWT------")
        .next()?
        .trim();
    let claims = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// "user JWT in FILE expired at DATE" (RFC 3339, UTC) when the creds file's JWT has
/// expired by `now` (seconds since the epoch).
pub fn expired_at(path: &Path, creds: &str, now: i64) -> Option<String> {
    let exp = user_jwt_exp(creds)?;
    (exp <= now).then(|| {
        format!(
            "user JWT in {} expired at {} (get a new creds file)",
            path.display(),
            super::wire::rfc3339(exp.max(0) as u64, 0)
        )
    })
}

/// [`expired_at`] for the creds file at `path`, now.
pub fn check_creds_file(path: &Path) -> Option<String> {
    // A creds file is a few KiB; reading it is what async-nats does too.
    let bytes = crate::image::read_image(path, 64 << 10).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    expired_at(path, &String::from_utf8_lossy(&bytes), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "-----BEGIN NATS USER JWT-----\n{}.{}.c2ln\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAX\n------END USER NKEY SEED------\n",
            b64(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
            b64(claims)
        )
    }

    #[test]
    fn reads_exp_and_says_when_it_expired() {
        let text = creds(r#"{"sub":"UABC","exp":1767225600,"nats":{}}"#);
        assert_eq!(user_jwt_exp(&text), Some(1_767_225_600));
        let path = Path::new("/etc/twig/device.creds");
        assert_eq!(
            expired_at(path, &text, 1_767_225_600).as_deref(),
            Some("user JWT in /etc/twig/device.creds expired at 2026-01-01T00:00:00.000Z (get a new creds file)")
        );
        assert_eq!(expired_at(path, &text, 1_767_225_599), None);
    }

    #[test]
    fn no_exp_or_garbage_is_not_expired() {
        let path = Path::new("x.creds");
        assert_eq!(expired_at(path, &creds(r#"{"sub":"U"}"#), i64::MAX), None);
        assert_eq!(expired_at(path, "not a creds file", i64::MAX), None);
        assert_eq!(
            expired_at(path, &creds("not json"), i64::MAX),
            None,
            "bad claims are async-nats's to report"
        );
    }
}
