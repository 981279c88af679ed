#![forbid(unsafe_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use twig_manifest::{
    parse, parse_file, ComponentKind, ConfigRef, Image, Link, Manifest, ManifestError, Parsed,
    Scaler, Source, Spread, Warning,
};

fn src() -> Source<'static> {
    Source {
        file: None,
        base_dir: Some(Path::new("/apps/demo")),
    }
}

fn ok(text: &str) -> Parsed {
    match parse(text, &src()) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(text: &str) -> ManifestError {
    match parse(text, &src()) {
        Ok(p) => panic!("expected an error, got {:#?}", p.manifest),
        Err(e) => e,
    }
}

/// Asserts the error's path, and that its message contains `needle`.
#[track_caller]
fn assert_err(text: &str, path: &str, needle: &str) -> ManifestError {
    let e = err(text);
    assert_eq!(e.path, path, "wrong path in {e}");
    assert!(e.message.contains(needle), "`{needle}` not in {e}");
    e
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cfg(name: &str, pairs: &[(&str, &str)]) -> ConfigRef {
    ConfigRef {
        name: name.into(),
        properties: map(pairs),
    }
}

const FULL: &str = r#"# Modeled on wadm's oam/kvcounter.yaml and oam/config.yaml.
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: Rust-KV_counter
  annotations:
    version: v0.1.0
    description: 'Kvcounter demo in Rust'
    wasmcloud.dev/authors: wasmCloud team
  labels:
    app.oam.io/name: kvcounter-rust
spec:
  components:
    - name: kvcounter
      type: component
      properties:
        image: file://./build/kvcounter_s.wasm
        config:
          - name: component-config
            properties:
              lang: EN-US
              retries: 3
          - name: shared-config
      traits:
        - type: spreadscaler
          properties:
            instances: 3
            spread:
              - name: east
                requirements:
                  zone: us-east-1
                weight: 80
              - name: west
                requirements: {zone: us-west-1, arch: aarch64}
        - type: link
          properties:
            target:
              name: kvredis
              config:
                - name: redis-connect-local
                  properties:
                    url: redis://127.0.0.1:6379
            namespace: wasi
            package: keyvalue
            interfaces:
              - atomics
              - store
        - type: link
          properties:
            target: kvcounter
            name: loopback
            namespace: example
            package: self
            interfaces: [ping]

    - name: httpserver
      type: capability
      properties:
        image: ghcr.io/wasmcloud/http-server:0.23.0
        id: http-server-1
      traits:
        - type: daemonscaler
          properties:
            replicas: 1
        - type: link
          properties:
            target: kvcounter
            namespace: wasi
            package: http
            interfaces:
              - incoming-handler
            source:
              config:
                - name: listen-config
                  properties:
                    address: 127.0.0.1:8080

    - name: kvredis
      type: capability
      properties:
        image: twig:keyvalue-memory
"#;

#[test]
fn full_manifest() {
    let Parsed { manifest, warnings } = ok(FULL);
    assert_eq!(warnings, vec![]);
    assert_eq!(manifest.name, "Rust-KV_counter");
    assert_eq!(manifest.version.as_deref(), Some("v0.1.0"));
    assert_eq!(
        manifest.description.as_deref(),
        Some("Kvcounter demo in Rust")
    );
    assert_eq!(
        manifest.annotations,
        map(&[
            ("version", "v0.1.0"),
            ("description", "Kvcounter demo in Rust"),
            ("wasmcloud.dev/authors", "wasmCloud team"),
        ])
    );
    assert_eq!(
        manifest.labels,
        map(&[("app.oam.io/name", "kvcounter-rust")])
    );
    assert_eq!(manifest.components.len(), 3);

    let kv = &manifest.components[0];
    assert_eq!(kv.name, "kvcounter");
    assert_eq!(kv.kind, ComponentKind::Component);
    // wadm: lowercase, non-ASCII-alphanumerics to `_`, `{app}-{component}`.
    assert_eq!(kv.id, "rust_kv_counter-kvcounter");
    assert_eq!(
        kv.image,
        Image::File(PathBuf::from("/apps/demo/build/kvcounter_s.wasm"))
    );
    assert_eq!(
        kv.config,
        vec![
            cfg("component-config", &[("lang", "EN-US"), ("retries", "3")]),
            cfg("shared-config", &[]),
        ]
    );
    let scaler = kv.scaler.as_ref().expect("scaler");
    assert_eq!(
        scaler,
        &Scaler::Spread {
            instances: 3,
            spread: vec![
                Spread {
                    name: "east".into(),
                    requirements: map(&[("zone", "us-east-1")]),
                    weight: Some(80),
                },
                Spread {
                    name: "west".into(),
                    requirements: map(&[("zone", "us-west-1"), ("arch", "aarch64")]),
                    weight: None,
                },
            ],
        }
    );
    assert_eq!(scaler.instances(), 3);
    assert_eq!(scaler.spread().len(), 2);
    assert_eq!(
        kv.links,
        vec![
            Link {
                namespace: "wasi".into(),
                package: "keyvalue".into(),
                interfaces: vec!["atomics".into(), "store".into()],
                name: "default".into(),
                target: "kvredis".into(),
                target_id: "rust_kv_counter-kvredis".into(),
                source_config: vec![],
                target_config: vec![cfg(
                    "redis-connect-local",
                    &[("url", "redis://127.0.0.1:6379")]
                )],
            },
            Link {
                namespace: "example".into(),
                package: "self".into(),
                interfaces: vec!["ping".into()],
                name: "loopback".into(),
                target: "kvcounter".into(),
                target_id: "rust_kv_counter-kvcounter".into(),
                source_config: vec![],
                target_config: vec![],
            },
        ]
    );

    let http = manifest.component("httpserver").expect("httpserver");
    assert_eq!(http.kind, ComponentKind::Capability);
    assert_eq!(http.id, "http-server-1");
    assert_eq!(
        http.image,
        Image::Reference("ghcr.io/wasmcloud/http-server:0.23.0".into())
    );
    assert_eq!(http.config, vec![]);
    assert_eq!(
        http.scaler,
        Some(Scaler::Daemon {
            instances: 1,
            spread: vec![]
        })
    );
    assert_eq!(
        http.links,
        vec![Link {
            namespace: "wasi".into(),
            package: "http".into(),
            interfaces: vec!["incoming-handler".into()],
            name: "default".into(),
            target: "kvcounter".into(),
            target_id: "rust_kv_counter-kvcounter".into(),
            source_config: vec![cfg("listen-config", &[("address", "127.0.0.1:8080")])],
            target_config: vec![],
        }]
    );

    let redis = manifest.component("kvredis").expect("kvredis");
    assert_eq!(redis.kind, ComponentKind::Capability);
    assert_eq!(redis.id, "rust_kv_counter-kvredis");
    assert_eq!(redis.image, Image::Reference("twig:keyvalue-memory".into()));
    assert_eq!(redis.scaler, None);
    assert_eq!(redis.links, vec![]);
    assert!(manifest.component("nope").is_none());

    // The host keeps the model as JSON.
    let json = serde_json::to_string(&manifest).expect("serialize");
    let back: Manifest = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, manifest);
    assert!(json.contains(r#""kind":"capability""#), "{json}");
}

/// A minimal manifest with `body` as its only component's extra lines
/// (indented under the component).
fn one(props_and_traits: &str) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: app\nspec:\n  components:\n    - name: c\n      type: component\n{props_and_traits}"
    )
}

const IMG: &str = "      properties:\n        image: ghcr.io/x/c:1\n";

fn with_trait(t: &str) -> String {
    one(&format!("{IMG}      traits:\n{t}"))
}

#[test]
fn deprecated_link_fields() {
    // wadm's tests/fixtures/manifests/deprecated-source-and-target-config.yaml, trimmed.
    let text = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: rust-http-blobstore
  annotations:
    version: v0.0.1
spec:
  components:
    - name: http-blobstore
      type: actor
      properties:
        image: ghcr.io/wasmcloud/components/http-blobstore-rust:0.2.0
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target: blobstore-fs
            namespace: wasi
            package: blobstore
            interfaces: [blobstore]
            target_config:
              - name: root-directory
                properties:
                  root: '/tmp'
    - name: httpserver
      type: capability
      properties:
        image: ghcr.io/wasmcloud/http-server:0.23.2
      traits:
        - type: link
          properties:
            target: http-blobstore
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source_config:
              - name: default-http
                properties:
                  address: 0.0.0.0:8000
    - name: blobstore-fs
      type: capability
      properties:
        image: ghcr.io/wasmcloud/blobstore-fs:0.10.1
"#;
    let p = ok(text);
    let m = &p.manifest;
    assert_eq!(m.components[0].kind, ComponentKind::Component);
    assert_eq!(
        m.components[0].links[0].target_config,
        vec![cfg("root-directory", &[("root", "/tmp")])]
    );
    assert_eq!(
        m.components[0].links[0].target_id,
        "rust_http_blobstore-blobstore_fs"
    );
    assert_eq!(
        m.components[1].links[0].source_config,
        vec![cfg("default-http", &[("address", "0.0.0.0:8000")])]
    );
    let paths: Vec<&str> = p.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.components[0].traits[1].properties.target_config",
            "spec.components[1].traits[0].properties.source_config",
        ]
    );
    assert!(p.warnings[0].message.contains("deprecated"));
}

#[test]
fn new_link_fields_take_precedence_over_old() {
    let text = with_trait(
        "        - type: link
          properties:
            target: {name: c, config: [{name: new-t}]}
            target_config: [{name: old-t}]
            source: {config: [{name: new-s}]}
            source_config: [{name: old-s}]
            namespace: my
            package: pkg
            interfaces: [i]
",
    );
    let p = ok(&text);
    let link = &p.manifest.components[0].links[0];
    assert_eq!(link.target_config, vec![cfg("new-t", &[])]);
    assert_eq!(link.source_config, vec![cfg("new-s", &[])]);
    assert!(p
        .warnings
        .iter()
        .any(|w| w.path.ends_with("target_config") && w.message.contains("ignored")));
    assert!(p
        .warnings
        .iter()
        .any(|w| w.path.ends_with("source_config") && w.message.contains("ignored")));
}

#[test]
fn unknown_fields_warn_with_paths() {
    let text = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
extra: 1
metadata:
  name: app
  namespace: default
spec:
  components:
    - name: c
      type: component
      colour: red
      properties:
        imag: typo.wasm
        image: ghcr.io/x/c:1
        secrets:
          - name: s
            properties: {policy: p, key: k}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
            spread:
              - name: a
                requirements: {}
                wieght: 3
          incorrect: true
        - type: link
          properties:
            target: {name: c, secrets: [{name: x}], colour: blue}
            source: {config: [{name: cfg, propertes: {}}]}
            namespace: wasi
            package: http
            interfaces: [incoming-handlr]
        - type: custom-scaler
          properties: {whatever: 1}
  policies:
    - name: p
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties: {backend: vault}
"#;
    let p = ok(text);
    let got: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    let want = [
        "metadata.namespace: unknown field (ignored)",
        "extra: unknown field (ignored)",
        "spec.components[0].properties.imag: unknown field (ignored)",
        "spec.components[0].traits[0].properties.spread[0].wieght: unknown field (ignored)",
        "spec.components[0].traits[0].incorrect: unknown field (ignored)",
        "spec.components[0].traits[1].properties.interfaces[0]: unrecognized interface `wasi:http/incoming-handlr` (known: incoming-handler, outgoing-handler)",
        "spec.components[0].traits[1].properties.target.secrets: link secrets are not used by twig's built-in providers (ignored)",
        "spec.components[0].traits[1].properties.target.colour: unknown field (ignored)",
        "spec.components[0].traits[1].properties.source.config[0].propertes: unknown field (ignored)",
        "spec.components[0].traits[2].type: unknown trait type `custom-scaler` (ignored by twig)",
        "spec.components[0].colour: unknown field (ignored)",
    ];
    assert_eq!(got, want);
    assert_eq!(
        p.warnings[0],
        Warning {
            path: "metadata.namespace".into(),
            message: "unknown field (ignored)".into()
        }
    );
}

#[test]
fn shared_annotation_and_unknown_package_warn() {
    let text = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: app
  annotations:
    experimental.wasmcloud.dev/shared: "true"
spec:
  components:
    - name: c
      type: component
      properties: {image: ghcr.io/x/c:1}
      traits:
        - type: link
          properties: {target: c, namespace: wasi, package: htp, interfaces: [x]}
"#;
    let p = ok(text);
    let got: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with(
        "metadata.annotations[\"experimental.wasmcloud.dev/shared\"]: shared applications"
    ));
    assert!(got[1].starts_with(
        "spec.components[0].traits[0].properties.package: unrecognized package `wasi:htp`"
    ));
}

#[test]
fn images_resolve() {
    let image = |s: &str| -> Image {
        let text = one(&format!("      properties:\n        image: '{s}'\n"));
        ok(&text).manifest.components[0].image.clone()
    };
    let file = |s: &str| Image::File(PathBuf::from(s));
    let reference = |s: &str| Image::Reference(s.into());
    assert_eq!(image("file:///abs/x.wasm"), file("/abs/x.wasm"));
    assert_eq!(image("file://./x.wasm"), file("/apps/demo/x.wasm"));
    assert_eq!(image("file://x.wasm"), file("/apps/demo/x.wasm"));
    assert_eq!(
        image("file://../lib/x.wasm"),
        file("/apps/demo/../lib/x.wasm")
    );
    assert_eq!(image("/abs/y.wasm"), file("/abs/y.wasm"));
    assert_eq!(image("./build/y.wasm"), file("/apps/demo/build/y.wasm"));
    assert_eq!(image("../y.wasm"), file("/apps/demo/../y.wasm"));
    assert_eq!(image("build/y.wasm"), file("/apps/demo/build/y.wasm"));
    assert_eq!(image("y.wasm"), file("/apps/demo/y.wasm"));
    assert_eq!(image("ghcr.io/x/y:1.0"), reference("ghcr.io/x/y:1.0"));
    assert_eq!(
        image("oci://ghcr.io/x/y:1.0"),
        reference("oci://ghcr.io/x/y:1.0")
    );
    assert_eq!(image("twig:http-server"), reference("twig:http-server"));
    assert_eq!(
        image("localhost:5000/y.wasm"),
        reference("localhost:5000/y.wasm")
    );
    assert_eq!(image("ghcr.io/x/y"), reference("ghcr.io/x/y"));

    // No base dir: the current directory.
    let text = one("      properties:\n        image: ./x.wasm\n");
    let p = parse(&text, &Source::default()).expect("parse");
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(
        p.manifest.components[0].image,
        Image::File(cwd.join("x.wasm"))
    );
    // A relative base dir is taken from the current directory.
    let p = parse(
        &text,
        &Source {
            file: None,
            base_dir: Some(Path::new("sub")),
        },
    )
    .expect("parse");
    assert_eq!(
        p.manifest.components[0].image,
        Image::File(cwd.join("sub/x.wasm"))
    );

    assert_err(
        &one("      properties:\n        image: ''\n"),
        "spec.components[0].properties.image",
        "must not be empty",
    );
    assert_err(
        &one("      properties:\n        image: 'file://'\n"),
        "spec.components[0].properties.image",
        "must not be empty",
    );
}

#[test]
fn parse_file_names_the_file_and_resolves_beside_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let path = dir.join("app.yaml");
    std::fs::write(&path, one("      properties:\n        image: ./c.wasm\n")).expect("write");
    let p = parse_file(&path).expect("parse_file");
    assert_eq!(
        p.manifest.components[0].image,
        Image::File(dir.join("c.wasm"))
    );

    std::fs::write(
        &path,
        FULL.replace(
            "target: kvcounter\n            name: loopback",
            "target: kvcountr\n            name: loopback",
        ),
    )
    .expect("write");
    let e = parse_file(&path).expect_err("bad target");
    assert_eq!(e.file.as_deref(), Some(path.as_path()));
    assert_eq!(e.line, Some(50));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:50: spec.components[0].traits[2].properties.target: no component named `kvcountr` in this manifest (components: kvcounter, httpserver, kvredis)",
            path.display()
        )
    );

    let missing = dir.join("missing.yaml");
    let e = parse_file(&missing).expect_err("missing file");
    assert_eq!(e.file.as_deref(), Some(missing.as_path()));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot open", missing.display())));

    std::fs::write(&path, b"apiVersion: \xff\n").expect("write");
    let e = parse_file(&path).expect_err("not utf-8");
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn error_display() {
    let e = ManifestError {
        file: Some("app.yaml".into()),
        path: "spec.components[1].traits[0].properties.target".into(),
        line: Some(14),
        message: "no component named `greter` in this manifest (components: greeter, frontend)"
            .into(),
    };
    assert_eq!(
        e.to_string(),
        "app.yaml:14: spec.components[1].traits[0].properties.target: no component named `greter` in this manifest (components: greeter, frontend)"
    );
    let e = ManifestError {
        file: None,
        line: None,
        ..e
    };
    assert_eq!(
        e.to_string(),
        "spec.components[1].traits[0].properties.target: no component named `greter` in this manifest (components: greeter, frontend)"
    );
    let e = ManifestError {
        line: Some(3),
        path: String::new(),
        message: "empty document".into(),
        file: None,
    };
    assert_eq!(e.to_string(), "line 3: empty document");
    let e = ManifestError {
        file: Some("a.yaml".into()),
        line: None,
        ..e
    };
    assert_eq!(e.to_string(), "a.yaml: empty document");
    let w = Warning {
        path: "spec.x".into(),
        message: "unknown field (ignored)".into(),
    };
    assert_eq!(w.to_string(), "spec.x: unknown field (ignored)");
}

#[test]
fn error_lines_point_at_the_node() {
    let text = with_trait(
        "        - type: spreadscaler\n          properties:\n            instances: \"three\"\n",
    );
    let e = assert_err(
        &text,
        "spec.components[0].traits[0].properties.instances",
        "expected an unsigned integer, found a string",
    );
    assert_eq!(e.line, Some(14));
    let with_file = parse(
        &text,
        &Source {
            file: Some(Path::new("app.yaml")),
            base_dir: None,
        },
    )
    .expect_err("error");
    assert_eq!(
        with_file.to_string(),
        "app.yaml:14: spec.components[0].traits[0].properties.instances: expected an unsigned integer, found a string"
    );
}

#[test]
fn document_errors() {
    let e = assert_err("", "", "empty document");
    assert_eq!(e.line, None);
    assert_err("# only a comment\n", "", "empty document");
    assert_err("---\n", "", "empty document");
    let e = assert_err("a: [1, 2\nb: 3\n", "", "invalid YAML");
    assert!(e.line.is_some(), "{e:?}");
    let e = assert_err("key: value\n  bad: indent\n", "", "invalid YAML");
    assert_eq!(e.line, Some(2));
    let e = assert_err(&format!("{FULL}---\n{FULL}"), "", "second YAML document");
    assert_eq!(e.line, Some(FULL.lines().count() + 1));
    assert_err("- a\n- b\n", "", "expected a mapping, found a sequence");
    assert_err("just text\n", "", "expected a mapping, found a string");
    assert_err("a: 1\na: 2\n", "", "duplicate");
    let big = format!("{FULL}#{}\n", "x".repeat(twig_manifest::MAX_MANIFEST_BYTES));
    assert_err(&big, "", "bytes");
}

#[test]
fn header_errors() {
    let body = "metadata:\n  name: app\nspec:\n  components:\n    - {name: c, type: component, properties: {image: x.wasm}}\n";
    assert_err(
        &format!("kind: Application\n{body}"),
        "apiVersion",
        "missing",
    );
    let e = assert_err(
        &format!("apiVersion: core.oam.dev/v1\nkind: Application\n{body}"),
        "apiVersion",
        "unsupported apiVersion `core.oam.dev/v1`",
    );
    assert_eq!(e.line, Some(1));
    assert_err(
        &format!("apiVersion: core.oam.dev/v1beta1\nkind: Component\n{body}"),
        "kind",
        "unsupported kind `Component`",
    );
    assert_err(
        &format!("apiVersion: core.oam.dev/v1beta1\n{body}"),
        "kind",
        "missing",
    );
    let head = "apiVersion: core.oam.dev/v1beta1\nkind: Application\n";
    let comps =
        "spec:\n  components:\n    - {name: c, type: component, properties: {image: x.wasm}}\n";
    assert_err(&format!("{head}{comps}"), "metadata", "missing");
    assert_err(
        &format!("{head}metadata:\n  labels: {{}}\n{comps}"),
        "metadata.name",
        "missing",
    );
    for bad in ["my.app", "my app", "''", "a/b"] {
        assert_err(
            &format!("{head}metadata:\n  name: {bad}\n{comps}"),
            "metadata.name",
            "not a valid application name",
        );
    }
    assert_err(
        &format!("{head}metadata:\n  name: [a]\n{comps}"),
        "metadata.name",
        "expected a string, found a sequence",
    );
    assert_err(
        &format!("{head}metadata:\n  name: app\n  annotations:\n    version: latest\n{comps}"),
        "metadata.annotations.version",
        "`latest` is not allowed",
    );
    assert_err(
        &format!("{head}metadata:\n  name: app\n  labels:\n    bad key: x\n{comps}"),
        "metadata.labels[\"bad key\"]",
        "not a valid key",
    );
    assert_err(
        &format!("{head}metadata:\n  name: app\n  labels:\n    k: [x]\n{comps}"),
        "metadata.labels.k",
        "expected a string",
    );
    let meta = "metadata:\n  name: app\n";
    assert_err(&format!("{head}{meta}"), "spec", "missing");
    assert_err(
        &format!("{head}{meta}spec: {{}}\n"),
        "spec.components",
        "missing",
    );
    assert_err(
        &format!("{head}{meta}spec:\n  components: []\n"),
        "spec.components",
        "at least one component",
    );
    assert_err(
        &format!("{head}{meta}spec:\n  components:\n"),
        "spec.components",
        "null",
    );
    assert_err(
        &format!("{head}{meta}spec:\n  components: {{a: 1}}\n"),
        "spec.components",
        "expected a sequence, found a mapping",
    );
}

#[test]
fn component_errors() {
    let head = "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: app\nspec:\n  components:\n";
    let c = |body: &str| format!("{head}{body}");
    assert_err(
        &c("    - type: component\n      properties: {image: x.wasm}\n"),
        "spec.components[0].name",
        "missing",
    );
    assert_err(
        &c("    - name: ''\n      type: component\n      properties: {image: x.wasm}\n"),
        "spec.components[0].name",
        "must not be empty",
    );
    assert_err(
        &c("    - name: c\n      properties: {image: x.wasm}\n"),
        "spec.components[0].type",
        "missing",
    );
    assert_err(
        &c("    - name: c\n      type: provider\n      properties: {image: x.wasm}\n"),
        "spec.components[0].type",
        "unknown component type `provider`",
    );
    assert_err(
        &c("    - name: c\n      type: component\n"),
        "spec.components[0].properties",
        "missing",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {id: x}\n"),
        "spec.components[0].properties.image",
        "missing",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties:\n        application: {name: shared, component: c}\n"),
        "spec.components[0].properties.application",
        "shared components",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties:\n        image: x.wasm\n        application: {name: shared, component: c}\n"),
        "spec.components[0].properties.application",
        "mutually exclusive",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {image: x.wasm, id: ''}\n"),
        "spec.components[0].properties.id",
        "must not be empty",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {image: x.wasm, config: [{properties: {a: b}}]}\n"),
        "spec.components[0].properties.config[0].name",
        "missing",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {image: x.wasm, config: [{name: n, properties: {a: [1]}}]}\n"),
        "spec.components[0].properties.config[0].properties.a",
        "expected a string, found a sequence",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {image: x.wasm, config: {name: n}}\n"),
        "spec.components[0].properties.config",
        "expected a sequence, found a mapping",
    );
    assert_err(
        &c("    - name: c\n      type: component\n      properties: {image: x.wasm}\n      traits: {type: link}\n"),
        "spec.components[0].traits",
        "expected a sequence",
    );
    // Duplicate names.
    let dup = "    - {name: a, type: component, properties: {image: x.wasm}}\n    - {name: b, type: component, properties: {image: x.wasm}}\n    - {name: a, type: capability, properties: {image: y}}\n";
    let e = assert_err(
        &c(dup),
        "spec.components[2].name",
        "duplicate component name `a`",
    );
    assert_eq!(e.line, Some(9));
    // Duplicate explicit ids.
    let dup = "    - {name: a, type: component, properties: {image: x.wasm, id: same}}\n    - {name: b, type: capability, properties: {image: y, id: same}}\n";
    assert_err(
        &c(dup),
        "spec.components[1].properties.id",
        "duplicate component id",
    );
    // Computed ids collide too: `a-b` and `a_b` both become `app-a_b`.
    let dup = "    - {name: a-b, type: component, properties: {image: x.wasm}}\n    - {name: a_b, type: component, properties: {image: x.wasm}}\n";
    assert_err(&c(dup), "spec.components[1].name", "computed id `app-a_b`");
    // An explicit id may not take another component's computed id.
    let dup = "    - {name: a, type: component, properties: {image: x.wasm}}\n    - {name: b, type: component, properties: {image: x.wasm, id: app-a}}\n";
    assert_err(&c(dup), "spec.components[1].properties.id", "`app-a`");
}

#[test]
fn scaler_errors() {
    let s = |props: &str| {
        with_trait(&format!(
            "        - type: spreadscaler\n          properties:\n{props}"
        ))
    };
    let p = "spec.components[0].traits[0].properties";
    assert_err(
        &s("            instances: \"three\"\n"),
        &format!("{p}.instances"),
        "expected an unsigned integer, found a string",
    );
    assert_err(
        &s("            instances: three\n"),
        &format!("{p}.instances"),
        "expected an unsigned integer, found a string",
    );
    assert_err(
        &s("            instances: -1\n"),
        &format!("{p}.instances"),
        "found a negative integer (-1)",
    );
    assert_err(
        &s("            instances: 2.5\n"),
        &format!("{p}.instances"),
        "found a float",
    );
    assert_err(
        &s("            instances: 1000001\n"),
        &format!("{p}.instances"),
        "too large (at most 1000000)",
    );
    assert_err(
        &s("            instances: 99999999999999999999999\n"),
        &format!("{p}.instances"),
        "too large",
    );
    assert_err(
        &s("            spread: []\n"),
        &format!("{p}.instances"),
        "missing",
    );
    assert_err(
        &s("            instances: 1\n            replicas: 1\n"),
        &format!("{p}.replicas"),
        "old name",
    );
    assert_err(
        &s("            instances: 1\n            spread: [{requirements: {a: b}}]\n"),
        &format!("{p}.spread[0].name"),
        "missing",
    );
    assert_err(
        &s("            instances: 1\n            spread: [{name: x, weight: -3}]\n"),
        &format!("{p}.spread[0].weight"),
        "unsigned integer",
    );
    assert_err(
        &s("            instances: 1\n            spread: [{name: x, requirements: [a]}]\n"),
        &format!("{p}.spread[0].requirements"),
        "expected a mapping, found a sequence",
    );
    assert_err(
        &with_trait("        - type: spreadscaler\n"),
        "spec.components[0].traits[0].properties",
        "missing",
    );
    assert_err(
        &with_trait("        - properties: {instances: 1}\n"),
        "spec.components[0].traits[0].type",
        "missing",
    );
    // Zero and the maximum are fine.
    let m = ok(&s("            instances: 0\n")).manifest;
    assert_eq!(
        m.components[0].scaler.as_ref().map(|s| s.instances()),
        Some(0)
    );
    let m = ok(&s("            instances: 1000000\n")).manifest;
    assert_eq!(
        m.components[0].scaler.as_ref().map(|s| s.instances()),
        Some(1_000_000)
    );
    // Two scalers.
    let e = assert_err(
        &with_trait(
            "        - type: spreadscaler\n          properties: {instances: 1}\n        - type: daemonscaler\n          properties: {instances: 1}\n",
        ),
        "spec.components[0].traits[1]",
        "at most one scaler",
    );
    assert!(e.message.contains("spec.components[0].traits[0]"), "{e}");
}

#[test]
fn link_errors() {
    let l = |props: &str| {
        with_trait(&format!(
            "        - type: link\n          properties:\n{props}"
        ))
    };
    let p = "spec.components[0].traits[0].properties";
    let full = |skip: &str| {
        let fields = [
            ("namespace", "            namespace: wasi\n"),
            ("package", "            package: http\n"),
            ("interfaces", "            interfaces: [incoming-handler]\n"),
            ("target", "            target: c\n"),
        ];
        let body: String = fields
            .iter()
            .filter(|(k, _)| *k != skip)
            .map(|(_, v)| *v)
            .collect();
        l(&body)
    };
    for field in ["namespace", "package", "interfaces", "target"] {
        assert_err(&full(field), &format!("{p}.{field}"), "missing");
    }
    assert!(parse(&full(""), &src()).is_ok());
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: []\n            target: c\n"),
        &format!("{p}.interfaces"),
        "at least one interface",
    );
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: incoming-handler\n            target: c\n"),
        &format!("{p}.interfaces"),
        "expected a sequence, found a string",
    );
    assert_err(
        &l("            namespace: ''\n            package: http\n            interfaces: [a]\n            target: c\n"),
        &format!("{p}.namespace"),
        "must not be empty",
    );
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: [a, {b: c}]\n            target: c\n"),
        &format!("{p}.interfaces[1]"),
        "expected a string, found a mapping",
    );
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: [incoming-handler]\n            target: {config: []}\n"),
        &format!("{p}.target.name"),
        "missing",
    );
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: [incoming-handler]\n            target: [c]\n"),
        &format!("{p}.target"),
        "expected a component name or a mapping with `name`, found a sequence",
    );
    let e = assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: [incoming-handler]\n            target: greter\n"),
        &format!("{p}.target"),
        "no component named `greter` in this manifest (components: c)",
    );
    assert_eq!(e.line, Some(17));
    assert_err(
        &l("            namespace: wasi\n            package: http\n            interfaces: [incoming-handler]\n            target: {name: greter}\n"),
        &format!("{p}.target.name"),
        "no component named `greter`",
    );
    // Duplicate links (same name, namespace, package and interface).
    let two = with_trait(
        "        - type: link
          properties: {namespace: wasi, package: http, interfaces: [incoming-handler], target: c}
        - type: link
          properties: {namespace: wasi, package: http, interfaces: [outgoing-handler, incoming-handler], target: c}
",
    );
    assert_err(
        &two,
        "spec.components[0].traits[1].properties.interfaces[1]",
        "duplicate link",
    );
    // ...but a different link name is fine.
    let named = two.replace(
        "target: c}\n        - type: link",
        "target: c, name: other}\n        - type: link",
    );
    assert!(parse(&named, &src()).is_ok());
    // Two link configs of one name that both define properties.
    let cfgs = with_trait(
        "        - type: link
          properties: {namespace: a, package: b, interfaces: [i], target: c, source: {config: [{name: x, properties: {k: v}}]}}
        - type: link
          properties: {namespace: a, package: b, interfaces: [j], target: {name: c, config: [{name: x, properties: {k: w}}]}}
",
    );
    assert_err(
        &cfgs,
        "spec.components[0].traits[1].properties.target.config[0].name",
        "duplicate link config name `x`",
    );
}

#[test]
fn links_may_point_forwards_backwards_and_at_themselves() {
    let text = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: app}
spec:
  components:
    - name: a
      type: component
      properties: {image: a.wasm}
      traits:
        - {type: link, properties: {namespace: x, package: y, interfaces: [z], target: b}}
        - {type: link, properties: {namespace: x, package: y, interfaces: [w], target: a}}
    - name: b
      type: component
      properties: {image: b.wasm, id: b-id}
      traits:
        - {type: link, properties: {namespace: x, package: y, interfaces: [z], target: a}}
"#;
    let m = ok(text).manifest;
    assert_eq!(m.components[0].links[0].target_id, "b-id");
    assert_eq!(m.components[0].links[1].target_id, "app-a");
    assert_eq!(m.components[1].links[0].target_id, "app-a");
}

#[test]
fn scalars_read_as_strings_where_strings_are_expected() {
    let text = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: app
  annotations:
    version: 1.0
    build: 42
    flag: true
spec:
  components:
    - name: 7
      type: component
      properties:
        image: x.wasm
        config:
          - name: c
            properties: {port: 8080, ratio: 0.5, on: yes, tagged: !!str 12}
"#;
    let m = ok(text).manifest;
    assert_eq!(m.version.as_deref(), Some("1.0"));
    assert_eq!(m.annotations["build"], "42");
    assert_eq!(m.annotations["flag"], "true");
    assert_eq!(m.components[0].name, "7");
    assert_eq!(
        m.components[0].config[0].properties,
        map(&[
            ("port", "8080"),
            ("ratio", "0.5"),
            ("on", "yes"),
            ("tagged", "12")
        ])
    );
}

#[test]
fn anchors_and_aliases_work() {
    let text = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: app}
spec:
  components:
    - name: a
      type: component
      properties: {image: a.wasm}
      traits:
        - &scale {type: spreadscaler, properties: {instances: 2}}
    - name: b
      type: component
      properties: {image: b.wasm}
      traits:
        - *scale
"#;
    let m = ok(text).manifest;
    assert_eq!(m.components[1].scaler, m.components[0].scaler);
}

#[test]
fn hostile_input_is_an_error() {
    let deep = format!("{}x{}", "[".repeat(5000), "]".repeat(5000));
    assert!(parse(&deep, &src()).is_err());
    let deep = format!("{}x", "- ".repeat(100_000));
    assert!(parse(&deep, &src()).is_err());
    let deep = format!("{}x", "a: ".repeat(100_000));
    assert!(parse(&deep, &src()).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
    assert_err(bomb, "", "alias");
    assert_err("? [a]\n: b\n", "", "mapping key");
    assert!(parse("\u{feff}", &src()).is_err());
    assert!(parse("\0", &src()).is_err());
}

/// wadm 0.21's secrets: `spec.policies` of the secret policy type with a
/// backend, and components' `secrets` naming one of them; wadm's checks.
#[test]
fn secrets_and_their_policies_are_read_and_checked() {
    let doc = |policies: &str, secrets: &str| {
        format!(
            "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: app
spec:
  policies:
{policies}
  components:
    - name: c
      type: component
      properties:
        image: ghcr.io/x/c:1
        secrets:
{secrets}
"
        )
    };
    let nats = "    - name: nats-kv\n      type: policy.secret.wasmcloud.dev/v1alpha1\n      properties: {backend: nats-kv, extra: x}";
    let p = ok(&doc(
        nats,
        "          - name: api_password\n            properties: {policy: nats-kv, key: api_password, field: pw, version: \"3\"}",
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let m = &p.manifest;
    assert_eq!(m.policies.len(), 1);
    assert_eq!(m.policies[0].name, "nats-kv");
    assert_eq!(m.policies[0].backend, "nats-kv");
    assert_eq!(
        m.policies[0].properties.get("extra").map(String::as_str),
        Some("x")
    );
    let s = &m.components[0].secrets[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.policy.as_str(),
            s.key.as_str(),
            s.field.as_deref(),
            s.version.as_deref()
        ),
        (
            "api_password",
            "nats-kv",
            "api_password",
            Some("pw"),
            Some("3")
        )
    );
    for (policies, secrets, want) in [
        (
            nats,
            "          - name: s\n            properties: {policy: vault, key: k}",
            "spec.components[0].properties.secrets[0].properties.policy: secret 's' is mapped to unknown policy 'vault'",
        ),
        (
            "    - name: p\n      type: policy.other/v1\n      properties: {backend: b}",
            "          - name: s\n            properties: {policy: p, key: k}",
            "spec.policies[0].type: unknown policy type `policy.other/v1`",
        ),
        (
            "    - name: p\n      type: policy.secret.wasmcloud.dev/v1alpha1\n      properties: {}",
            "          - name: s\n            properties: {policy: p, key: k}",
            "spec.policies[0].properties.backend: a secret policy needs a `backend`",
        ),
        (
            nats,
            "          - name: s\n            properties: {policy: nats-kv}",
            "spec.components[0].properties.secrets[0].properties.key: missing required field",
        ),
        (
            nats,
            "          - name: s\n            properties: {policy: nats-kv, key: a}\n          - name: s\n            properties: {policy: nats-kv, key: b}",
            "spec.components[0].properties.secrets[1].name: secret `s` is named twice",
        ),
    ] {
        let e = err(&doc(policies, secrets)).to_string();
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}
