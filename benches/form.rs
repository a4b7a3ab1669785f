//! Form encoding throughput (`src/proto/form`): a typical job payload and a 64 KiB one.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ferry::proto::form::encode_json_object;

/// About 300 bytes, ten fields, one nested object: what a typical job message looks like.
const TYPICAL: &str = r#"{"job":"send_welcome_email","id":"6f1c2a9e-2b41-4c8e-9d3a-7f0e5b1c2d3e","attempt":1,"queued_at":1718031234,"to":"ada.lovelace@example.com","subject":"Welcome to Ferry, Ada!","locale":"fr_FR","priority":null,"vars":{"name":"Ada Lovelace","plan":"pro","items":["a","b"],"total":12.5,"paid":true},"tags":["new","email"]}"#;

/// About 64 KiB: many records with nested objects, unicode and floats.
fn large_payload() -> String {
    let mut json = String::from("{\"records\":[");
    let mut i = 0;
    while json.len() < 64 * 1024 - 200 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"id":{i},"name":"user {i} é日本","score":{}.25,"active":{},"meta":{{"k":"v&w","n":null}}}}"#,
            i * 7,
            i % 2 == 0
        ));
        i += 1;
    }
    json.push_str("]}");
    json
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("form");
    let mut out = Vec::with_capacity(256 * 1024);
    group.throughput(Throughput::Bytes(TYPICAL.len() as u64));
    group.bench_function("typical_job_300B", |b| {
        b.iter(|| {
            out.clear();
            encode_json_object(black_box(TYPICAL.as_bytes()), &mut out).unwrap();
        })
    });
    let large = large_payload();
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function("records_64KiB", |b| {
        b.iter(|| {
            out.clear();
            encode_json_object(black_box(large.as_bytes()), &mut out).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
