//! `echo-messaging-v3`: wasmCloud's 0.3.0 echo example's behaviour,
//! written for twig's tests: every message is answered with
//! `request-reply.reply` and its data unchanged. `send` and `request` let
//! a test make the component send.

wit_bindgen::generate!({
    world: "twig:test3/echo-messaging-v3",
    path: ["../wit/messaging3"],
    generate_all,
});

use exports::wasmcloud::messaging::incoming_handler::Guest as Handler;
use wasmcloud::messaging::producer;
use wasmcloud::messaging::request_reply::{RequestOptions, reply, request};
use wasmcloud::messaging::types::{Client, Error, Message};

struct Echo;

fn text(e: Error) -> String {
    match e {
        Error::Timeout => "timeout".into(),
        Error::Connection(m) => format!("connection: {m}"),
        Error::PermissionDenied(m) => format!("permission denied: {m}"),
        Error::Other(m) => format!("other: {m}"),
    }
}

impl Handler for Echo {
    fn handle(msg: Message) -> Result<(), Error> {
        reply(&msg, Message::new(&msg.data()))
    }
}

impl Guest for Echo {
    fn send(subject: String, body: String) -> Result<(), String> {
        let c = Client::connect("").map_err(text)?;
        producer::send(&c, &subject, Message::new(body.as_bytes())).map_err(text)
    }

    fn send_with_metadata(subject: String, body: String) -> Result<(), String> {
        let c = Client::connect("").map_err(text)?;
        let m = Message::new(body.as_bytes());
        m.add_metadata("from", "echo-messaging-v3");
        producer::send(&c, &subject, m).map_err(text)
    }

    fn request(subject: String, body: String, timeout_ms: u32) -> Result<String, String> {
        let c = Client::connect("default").map_err(text)?;
        let opts = RequestOptions::new();
        opts.set_timeout_ms(timeout_ms);
        let replies =
            request(&c, &subject, &Message::new(body.as_bytes()), Some(opts)).map_err(text)?;
        let first = replies.first().ok_or("no reply")?;
        Ok(format!(
            "{}: {}",
            first.topic().unwrap_or_default(),
            String::from_utf8_lossy(&first.data())
        ))
    }
}

export!(Echo);
