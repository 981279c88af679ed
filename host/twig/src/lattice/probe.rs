//! Why a TLS connection to the NATS server fails.
//!
//! async-nats reports a failed TLS handshake only as `IO error`, which
//! tells an operator nothing. When that happens on a TLS uplink, twig makes
//! one connection of its own with the same CA and client certificate, reads
//! the server's `INFO` line (NATS sends it before the TLS upgrade), and
//! does the handshake with rustls to get the real cause: an unknown issuer,
//! a name mismatch, an expired certificate, a client certificate the server
//! refused.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls::{self, pki_types};

use super::UplinkOptions;

/// The cause of a TLS failure against the first server of `opts.url`, or
/// `None` if the handshake works (the `IO error` was something else).
pub(crate) async fn tls_problem(opts: &UplinkOptions) -> Option<String> {
    let first = opts.url.split(',').next()?.trim();
    let tls_url = first.starts_with("tls://");
    let hostport = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
    let hostport = hostport
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().ok()?),
        None => (hostport.to_string(), 4222),
    };
    if !tls_url && opts.tls_ca.is_none() && opts.tls_cert.is_none() {
        return requires_tls(&host, port).await;
    }
    let config = match client_config(opts) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let mut reader = BufReader::new(tcp);
        let mut info = String::new();
        reader.read_line(&mut info).await.ok()?;
        if !info.starts_with("INFO") {
            return None;
        }
        let tcp = reader.into_inner();
        let name = pki_types::ServerName::try_from(host.clone()).ok()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        match connector.connect(name, tcp).await {
            Err(e) => Some(format!("TLS handshake with {host}:{port} failed: {e}")),
            Ok(mut tls) => {
                // A server that requires a client certificate may refuse
                // it only after the handshake; a PING shows that.
                let _ = tls.write_all(b"PING\r\n").await;
                let mut buf = [0u8; 256];
                match tls.read(&mut buf).await {
                    Err(e) => Some(format!("TLS session with {host}:{port} failed: {e}")),
                    Ok(_) => None,
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// For a `nats://` URL with no TLS settings: whether the server's `INFO`
/// line says `tls_required` (async-nats then tries TLS with no CA and says
/// only `IO error`).
async fn requires_tls(host: &str, port: u16) -> Option<String> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        // INFO is one line; a server sending more than 64 KiB of it is not
        // a NATS server.
        let mut reader = BufReader::new(tcp).take(64 << 10);
        let mut info = String::new();
        reader.read_line(&mut info).await.ok()?;
        let json = info.strip_prefix("INFO")?.trim();
        let info: serde_json::Value = serde_json::from_str(json).ok()?;
        (info["tls_required"] == true).then(|| {
            format!(
                "the server at {host}:{port} requires TLS: use tls://{host}:{port} (with --nats-tls-ca if its certificate is not from a CA this device trusts)"
            )
        })
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Refuses a CA file that holds no certificate (empty, or PEM with no
/// `CERTIFICATE` block): async-nats would accept it and every handshake
/// fail later with an unknown issuer.
pub(crate) fn check_ca(path: &std::path::Path) -> Result<(), String> {
    use pki_types::pem::PemObject;
    let certs = pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("TLS CA {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in certs {
        cert.map_err(|e| format!("TLS CA {}: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "TLS CA {}: holds no certificate (no -----BEGIN CERTIFICATE----- block)",
            path.display()
        ));
    }
    Ok(())
}

fn client_config(opts: &UplinkOptions) -> Result<rustls::ClientConfig, String> {
    use pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &opts.tls_ca {
        let certs = pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => {
            let chain = pki_types::CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("TLS client certificate {}: {e}", cert.display()))?;
            let key = pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("TLS client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("TLS client certificate {}: {e}", cert.display()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let key_only = dir.join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        for p in [&empty, &key_only] {
            assert_eq!(
                check_ca(p).unwrap_err(),
                format!(
                    "TLS CA {}: holds no certificate (no -----BEGIN CERTIFICATE----- block)",
                    p.display()
                )
            );
        }
        let e = check_ca(&dir.join("missing.pem")).unwrap_err();
        assert!(
            e.starts_with(&format!("TLS CA {}", dir.join("missing.pem").display())),
            "{e}"
        );
    }
}
