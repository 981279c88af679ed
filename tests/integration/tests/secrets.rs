//! `wasmcloud:secrets` through the binary (issue 17): a manifest's
//! `secrets` with wadm 0.21's `policies`, fetched from twig's local
//! backend (`DATA/secrets/{backend}/{key}`) when the component starts, and
//! revealed to it; values never in the log, status or errors; a secret
//! file others can read is refused.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{stderr, stdout, TempDir, Twig};

const PASSWORD: &str = "hunter2-Zq81";
const DB_PASSWORD: &str = "s3cret-Kp44";

fn put(dir: &Path, backend: &str, key: &str, value: &[u8], mode: u32) {
    let root = dir.join("secrets");
    let b = root.join(backend);
    std::fs::create_dir_all(&b).unwrap();
    for d in [&root, &b] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let f = b.join(key);
    std::fs::write(&f, value).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn manifest(dir: &Path, app: &str, secrets: &[(&str, &str, Option<&str>)]) -> String {
    let mut entries = String::new();
    for (name, key, field) in secrets {
        entries.push_str(&format!(
            "          - name: {name}\n            properties:\n              policy: nats-kv\n              key: {key}\n"
        ));
        if let Some(f) = field {
            entries.push_str(&format!("              field: {f}\n"));
        }
    }
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  policies:
    - name: nats-kv
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: nats-kv
  components:
    - name: reader
      type: component
      properties:
        image: {image}
        secrets:
{entries}      traits:
        - type: spreadscaler
          properties:
            instances: 1
",
        image = guest_path("secret-reader").display()
    );
    let path = dir.join(format!("{app}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[test]
fn secrets_are_fetched_at_start_revealed_and_never_shown() {
    let tmp = TempDir::new("secrets");
    let data = tmp.path().join("d");
    std::fs::create_dir_all(&data).unwrap();
    put(&data, "nats-kv", "api_password", PASSWORD.as_bytes(), 0o600);
    let blob: Vec<u8> = (0..=255u8).rev().collect();
    put(&data, "nats-kv", "blob", &blob, 0o400);
    put(
        &data,
        "nats-kv",
        "db",
        format!(r#"{{"user":"app","password":"{DB_PASSWORD}"}}"#).as_bytes(),
        0o600,
    );
    let app = manifest(
        tmp.path(),
        "vault",
        &[
            ("api_password", "api_password", None),
            ("blob", "blob", None),
            ("db", "db", Some("password")),
        ],
    );
    let t = Twig::up(&data, &["--app", &app]);
    let s = t.settled(1);
    assert_eq!(s["apps"][0]["components"][0]["state"], "running", "{s}");

    let read = |name: &str| {
        let o = t.invoke("reader", "read", &[&format!("{name:?}")]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    assert_eq!(read("api_password"), format!(r#"ok("string:{PASSWORD}")"#));
    assert_eq!(read("db"), format!(r#"ok("string:{DB_PASSWORD}")"#));
    assert_eq!(read("blob"), r#"ok("bytes:256:255")"#);
    let o = t.invoke("reader", "digest", &[r#""blob""#]);
    assert_eq!(stdout(&o).trim(), format!(r#"ok("{}")"#, fnv(&blob)));
    // Not declared for this component: wasmCloud's only `get` error.
    assert_eq!(read("other"), r#"err("not-found")"#);

    // The values are nowhere but in the guest's own answers.
    let status = format!(
        "{}{}",
        stdout(&t.cli(&["status", "--json"])),
        stdout(&t.cli(&["status"]))
    );
    let log = t.log_text();
    for v in [PASSWORD, DB_PASSWORD] {
        assert!(!status.contains(v), "status shows a secret: {status}");
        assert!(!log.contains(v), "the log shows a secret: {log}");
    }
    assert!(log.contains("secrets fetched"), "{log}");

    // A secret file others can read is refused; the start fails naming the
    // file, never the value.
    put(&data, "nats-kv", "leaky", b"leaky-Vv12", 0o644);
    let bad = manifest(tmp.path(), "leaky", &[("leaky", "leaky", None)]);
    let o = t.cli(&["apply", &bad]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("secret `leaky` (policy `nats-kv`, key `leaky`)")
            && err.contains("secrets/nats-kv/leaky is open to other users (mode 644)"),
        "{err}"
    );
    assert!(!err.contains("leaky-Vv12"), "{err}");
    // A missing one: the path it looked for.
    let missing = manifest(tmp.path(), "missing", &[("gone", "gone", None)]);
    let o = t.cli(&["apply", &missing]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("secrets/nats-kv/gone not found"), "{err}");
}
