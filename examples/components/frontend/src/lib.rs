//! `frontend`: the entry point of the demo app. Exports `twig:demo/frontend`.
//!
//! It imports `twig:demo/greeter` and uses no capability at all: the host
//! satisfies the import with the `greeter` component, as told by the `link`
//! trait in app.yaml. This is plain component-to-component linking.

wit_bindgen::generate!({
    world: "frontend-component",
    path: "../../demo/wit",
});

use exports::twig::demo::frontend::Guest;
use twig::demo::greeter;

struct Frontend;

impl Guest for Frontend {
    fn welcome(name: String) -> String {
        let greeting = greeter::greet(&name);
        format!("{greeting} (via frontend)")
    }
}

export!(Frontend);
