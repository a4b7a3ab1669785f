//! php-fpm driven directly, with no broker and no ferry loop: the limit the pipeline
//! benchmark (`benches/pipeline.sh`) is compared with. CONCURRENCY threads each send
//! requests back to back (one connection per request, or kept with `--keep`), built and
//! read with ferry's own FastCGI code, and the total rate is printed.
//!
//! cargo run --release --example fastcgi_direct -- SOCKET SCRIPT COUNT CONCURRENCY [--keep]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferry::config::JobConfig;
use ferry::dispatch::request::{Message, RequestBuilder, RequestOptions, SourceKind};
use ferry::proto::fastcgi::{Exchange, ExchangeEvent, ExchangeOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, script, count, concurrency, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fastcgi_direct SOCKET SCRIPT COUNT CONCURRENCY [--keep]");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT");
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY");
    let keep = rest.iter().any(|a| a == "--keep");
    let start = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|t| {
            let (socket, script) = (socket.clone(), script.clone());
            let share = count / concurrency + usize::from(t < count % concurrency);
            std::thread::spawn(move || run(&socket, &script, share, keep))
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "direct concurrency={concurrency} keep_conn={keep} requests={ok} seconds={seconds:.2} req/s={:.0}",
        ok as f64 / seconds
    );
}

/// Sends `count` requests one after the other; returns how many completed.
fn run(socket: &str, script: &str, count: usize, keep: bool) -> usize {
    let job: JobConfig = serde_json::from_value(serde_json::json!({
        "pool": "direct", "script": script
    }))
    .expect("job config");
    let mut builder = RequestBuilder::default();
    let mut stream: Option<UnixStream> = None;
    let mut done = 0;
    let mut buf = Vec::new();
    for n in 0..count {
        let payload = format!(r#"{{"number": {n}, "name": "benchmark message"}}"#);
        let message = Message::new("direct", SourceKind::Redis, 1);
        let request_id = u16::try_from(n % 65_535 + 1).unwrap_or(1);
        let mut request = Vec::new();
        builder
            .build(
                &mut request,
                &job,
                &message,
                payload.as_bytes(),
                RequestOptions {
                    request_id,
                    keep_conn: keep,
                },
            )
            .expect("request");
        let mut options = ExchangeOptions::new(Duration::from_secs(30));
        options.request_id = request_id;
        options.keep_conn = keep;
        let mut exchange = Exchange::new(request, options, Instant::now());
        let conn = match stream.take() {
            Some(conn) => conn,
            None => UnixStream::connect(socket).expect("connect"),
        };
        let mut conn = conn;
        let mut out = Vec::new();
        exchange.poll_transmit(&mut out);
        conn.write_all(&out).expect("write");
        buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        let finished = loop {
            if let Some(ExchangeEvent::Finished(f)) = exchange.poll_event() {
                break f;
            }
            let read = conn.read(&mut chunk).expect("read");
            if read == 0 {
                exchange.handle_eof(Instant::now());
                continue;
            }
            buf.extend_from_slice(&chunk[..read]);
            while !buf.is_empty() && !exchange.is_finished() {
                let used = exchange
                    .handle_input(&buf, Instant::now())
                    .expect("response");
                if used == 0 {
                    break;
                }
                buf.drain(..used);
            }
        };
        if finished.reusable && keep {
            stream = Some(conn);
        }
        done += 1;
    }
    done
}
