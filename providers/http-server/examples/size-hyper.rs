//! Size probe: `size-tokio` with hyper's HTTP/1.1 server (the features
//! twig-http-server uses) answering instead. The stripped size difference
//! is what the HTTP stack costs; see README.md.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame};
use hyper_util::rt::{TokioIo, TokioTimer};

struct Ok2(Option<Bytes>);

impl Body for Ok2 {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("listening on {}", l.local_addr().expect("addr"));
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let b = b.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Ok2(Some(Bytes::from_static(b"ok")))))
                });
                let _ = b.serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
}
