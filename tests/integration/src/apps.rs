//! Manifests shared by the tests and the benchmarks.

use crate::guest_path;

/// wasmCloud's echo-messaging manifest, with the image the local build of
/// `echo-messaging`: the provider's `handler` link subscribes it to
/// `wasmcloud.echo` and a queue-grouped `jobs.>`; two instances.
pub fn echo_messaging_manifest(dir: &std::path::Path) -> String {
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: echo-messaging
  annotations:
    version: v0.0.1
spec:
  components:
    - name: echo
      type: component
      properties:
        image: {image}
        id: echo
      traits:
        # Two: the last check has the component request a subject it
        # answers itself, which needs a second instance.
        - type: spreadscaler
          properties:
            instances: 2
        - type: link
          properties:
            namespace: wasmcloud
            package: messaging
            interfaces: [consumer]
            target:
              name: nats
              config:
                - name: provider-tgt
                  properties:
                    subscriptions: wasmcloud.echo
    - name: nats
      type: capability
      properties:
        image: ghcr.io/wasmcloud/messaging-nats:0.27.0
      traits:
        - type: link
          properties:
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
            target:
              name: echo
            source:
              config:
                - name: provider-src
                  properties:
                    subscriptions: wasmcloud.echo,jobs.>|workers
",
        image = guest_path("echo-messaging").display()
    );
    let path = dir.join("echo-messaging.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
