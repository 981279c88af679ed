//! Size probe, baseline for the HTTP stack: what twig already links (a
//! current-thread tokio runtime with a TCP listener) answering one canned
//! HTTP response by hand. Compare with `size-hyper`; see README.md.
#![forbid(unsafe_code)]

use std::time::Duration;

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
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.readable().await;
                let _ = s.try_read(&mut buf);
                let _ = s.writable().await;
                let _ = s.try_write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                tokio::time::sleep(Duration::from_millis(1)).await;
            });
        }
    });
}
