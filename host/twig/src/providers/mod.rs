//! Capability providers, in-process.
//!
//! A manifest's `type: capability` component names a provider by image.
//! wasmCloud would start a provider binary from a registry; twig has its
//! providers built in and runs them inside the host process:
//!
//! | reference          | crate                   | what components import          |
//! |--------------------|-------------------------|---------------------------------|
//! | `twig:keyvalue`    | `twig-keyvalue`         | `wasi:keyvalue/{store,atomics,batch}` |
//! | `twig:http-server` | `twig-http-server`      | (calls their `wasi:http/incoming-handler`) |
//! | `twig:messaging`   | `twig-messaging`        | `wasmcloud:messaging/consumer` (delivers to their `handler`) |
//! | `twig:sensors`     | `twig-sensors`          | `twig:sensors/*` (delivers readings to their `handler`) |
//!
//! A manifest written for wasmCloud names `ghcr.io/wasmcloud/keyvalue-redis:0.30.0`
//! and the like; the board profile's `provider_images` maps those (any tag)
//! to a built-in one, and the host logs which stands in for which.
//!
//! A provider is placed like a component (a capability without a scaler
//! gets one instance, as wadm does) and is reached only through links: a
//! component's link to it routes the component's imports there; its own
//! link to a component (the HTTP server's `incoming-handler` link) makes it
//! call that component.
//!
//! Every kind is one file here implementing [`Provider`]; the host starts
//! them (`host::apps`) and knows nothing else about any one of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use twig_manifest::{ComponentSpec, Image};

use crate::host::pool::Directory;

pub mod http;
pub mod keyvalue;
pub mod messaging;
pub mod sensors;

/// The built-in providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    KeyValue,
    HttpServer,
    Messaging,
    Sensors,
}

impl ProviderKind {
    const ALL: [(ProviderKind, &'static str); 4] = [
        (ProviderKind::KeyValue, "twig:keyvalue"),
        (ProviderKind::HttpServer, "twig:http-server"),
        (ProviderKind::Messaging, "twig:messaging"),
        (ProviderKind::Sensors, "twig:sensors"),
    ];

    /// The kind a `twig:…` reference names (a `:tag` is ignored).
    pub fn from_reference(r: &str) -> Option<ProviderKind> {
        Self::ALL
            .iter()
            .find(|(_, n)| {
                r.strip_prefix(n)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
            })
            .map(|(k, _)| *k)
    }

    pub fn reference(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("twig:?")
    }

    pub fn references() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n)| *n).collect()
    }
}

/// An image reference without its `:tag` or `@digest`
/// (`ghcr.io/wasmcloud/http-server:0.27.0` → `ghcr.io/wasmcloud/http-server`).
pub fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' starts a tag; one before it is a port.
    match (image.rfind(':'), image.rfind('/')) {
        (Some(c), Some(s)) if c > s => &image[..c],
        (Some(c), None) => &image[..c],
        _ => image,
    }
}

/// Which built-in provider a capability component's image asks for, with
/// a note when it stands in for a wasmCloud provider image.
/// `provider_images` is the board's `[provider_images]` (wasmCloud image,
/// tag stripped → `twig:…` reference).
pub fn resolve(
    spec: &ComponentSpec,
    provider_images: &BTreeMap<String, String>,
) -> Result<(ProviderKind, Option<String>), String> {
    let image = match &spec.image {
        Image::Reference(r) => r.as_str(),
        Image::File(p) => {
            return Err(format!(
            "capability provider image {} is a file; twig runs its providers in-process (use {})",
            p.display(),
            ProviderKind::references().join(", ")
        ))
        }
    };
    if let Some(kind) = ProviderKind::from_reference(image) {
        return Ok((kind, None));
    }
    let bare = strip_tag(image);
    match provider_images
        .get(bare)
        .and_then(|r| ProviderKind::from_reference(r))
    {
        Some(kind) => Ok((
            kind,
            Some(format!("{} stands in for {image}", kind.reference())),
        )),
        None => Err(format!(
            "capability provider `{image}` has no built-in stand-in; use one of {} or map the image in the board profile's [provider_images]",
            ProviderKind::references().join(", ")
        )),
    }
}

/// A running built-in provider, whatever its kind: what the host asks of
/// each (the four kinds are the files beside this one).
pub trait Provider: Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// Starts what the provider does for the components it links to
    /// (HTTP listeners, message subscriptions, sensor sampling). Called
    /// once the app's components run, and again with the new links after
    /// [`Provider::stop_links`] when the lattice changes them.
    fn start_links(&self, cx: &LinkContext<'_>) -> Result<(), String>;

    /// Stops what [`Provider::start_links`] started (a listener closes and
    /// frees its port, subscriptions end, sampling stops).
    fn stop_links(&self);

    /// What it does now, for `twig status` (e.g. the addresses it serves).
    fn status(&self) -> Option<String>;

    /// The provider as its concrete type, for the component that uses it
    /// (`wasi:keyvalue` reaches its store this way).
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

/// What a provider's links are started with.
pub struct LinkContext<'a> {
    /// The app the provider belongs to.
    pub app: &'a str,
    /// The provider's id.
    pub provider: &'a str,
    /// Its links: the manifest's, then the lattice's with it as source.
    pub links: &'a [twig_manifest::Link],
    /// Its own config (the capability's `properties.config`, merged):
    /// settings for all its links, such as the HTTP server's
    /// `routing_mode`.
    pub config: &'a BTreeMap<String, String>,
    /// The way to the components it calls.
    pub host: Weak<dyn Directory>,
}

/// The `wasmcloud:messaging` `handler` links of a provider: the components
/// it delivers messages to.
pub fn handler_links(links: &[twig_manifest::Link]) -> impl Iterator<Item = &twig_manifest::Link> {
    links.iter().filter(|l| {
        l.namespace == "wasmcloud"
            && l.package == "messaging"
            && l.interfaces.iter().any(|i| i == "handler")
    })
}

/// Named configs' properties merged in order (a later entry's key wins):
/// a component's or provider's `config`, a link's source or target config.
pub fn merged_properties(configs: &[twig_manifest::ConfigRef]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for c in configs {
        out.extend(c.properties.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stripped() {
        assert_eq!(
            strip_tag("ghcr.io/wasmcloud/http-server:0.27.0"),
            "ghcr.io/wasmcloud/http-server"
        );
        assert_eq!(strip_tag("localhost:5000/x/y:1"), "localhost:5000/x/y");
        assert_eq!(strip_tag("localhost:5000/x/y"), "localhost:5000/x/y");
        assert_eq!(strip_tag("a/b@sha256:abc"), "a/b");
    }

    #[test]
    fn references_resolve() {
        assert_eq!(
            ProviderKind::from_reference("twig:keyvalue"),
            Some(ProviderKind::KeyValue)
        );
        assert_eq!(
            ProviderKind::from_reference("twig:http-server"),
            Some(ProviderKind::HttpServer)
        );
        assert_eq!(
            ProviderKind::from_reference("twig:keyvalue:0.1"),
            Some(ProviderKind::KeyValue)
        );
        assert_eq!(ProviderKind::from_reference("twig:nope"), None);
        assert_eq!(ProviderKind::from_reference("twig:keyvaluex"), None);
    }
}
