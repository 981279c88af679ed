//! `greeter`: the back end of the demo app. Exports `twig:demo/greeter`.
//!
//! Written the way wasmCloud users write components: capabilities come from
//! the `wasmcloud-component` crate (`wasi:config/store` for the greeting,
//! `wasi:logging` for the log line), the custom export from wit-bindgen.

wit_bindgen::generate!({
    world: "greeter-component",
    path: "../../demo/wit",
});

use exports::twig::demo::greeter::Guest;
use wasmcloud_component::wasi::config::store;

/// Used when the `greeting` config key is unset or cannot be read.
const DEFAULT_GREETING: &str = "Hello";

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        // In app.yaml the `greeter-config` config sets `greeting`.
        let greeting = match store::get("greeting") {
            Ok(Some(greeting)) => greeting,
            Ok(None) | Err(_) => DEFAULT_GREETING.to_string(),
        };
        wasmcloud_component::info!(context: "greeter", "greet called with name={name}");
        format!("{greeting}, {name}!")
    }
}

export!(Greeter);
