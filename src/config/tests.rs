//! Configuration tests: a full example, every default listed in `docs/CONFIGURATION.md`,
//! and the errors an operator sees for the usual mistakes.

use super::*;

/// A full configuration (pools, a Redis and an AMQP source; see `docs/CONFIGURATION.md`),
/// with the password file made real.
fn spec_example(secret_dir: &Path) -> String {
    std::fs::write(secret_dir.join("amqp.secret"), "s3cret\n").unwrap();
    format!(
        r#"{{
  "control": {{ "listen": "127.0.0.1:9180" }},
  "shutdown_timeout_ms": 30000,
  "pools": {{
    "php": {{ "address": "unix:/run/php/php8.2-fpm.sock", "max_in_flight": 4,
             "connect_timeout_ms": 1000, "request_timeout_ms": 60000,
             "keep_conn": false, "idle_timeout_ms": 10000, "status_path": "/status" }}
  }},
  "sources": [
    {{ "name": "events", "kind": "redis", "url": "redis://127.0.0.1:6379",
      "channels": ["commands"], "patterns": ["jobs.*"],
      "job": {{ "pool": "php", "script": "/srv/app/worker.php", "body": "form" }} }},
    {{ "name": "tasks", "kind": "amqp", "url": "amqp://guest@127.0.0.1:5672/%2f",
      "password_file": "{}/amqp.secret",
      "queue": "commands", "declare": {{ "durable": true }}, "prefetch": 4,
      "ack": "after_response", "max_attempts": 5, "retry_delays_ms": [1000, 10000, 60000],
      "job": {{ "pool": "php", "script": "/srv/app/worker.php", "body": "form",
               "params": {{ "APP_ENV": "prod" }} }} }}
  ]
}}"#,
        secret_dir.display()
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(text.as_bytes(), None)
}

const MINIMAL: &str = r#"{
  "pools": { "php": { "address": "unix:/tmp/php.sock" } },
  "sources": [ { "name": "q", "kind": "amqp", "url": "amqp://127.0.0.1", "queue": "jobs",
                 "job": { "pool": "php", "script": "/srv/w.php" } } ]
}"#;

#[test]
fn the_spec_example_loads() {
    let dir = temp_dir("spec");
    let config = parse_str(&spec_example(&dir)).unwrap();
    assert_eq!(config.sources.len(), 2);
    let SourceConfig::Amqp(tasks) = &config.sources[1] else {
        panic!("second source is amqp")
    };
    assert_eq!(tasks.urls[0].password.expose(), "s3cret");
    assert_eq!(tasks.urls[0].vhost, "/");
    assert_eq!(tasks.retry_delays_ms, vec![1000, 10000, 60000]);
    assert_eq!(
        tasks.job.params.get("APP_ENV").map(String::as_str),
        Some("prod")
    );
    assert!(matches!(
        tasks.declare,
        Declare::Exactly { durable: true, .. }
    ));
    let SourceConfig::Redis(events) = &config.sources[0] else {
        panic!("first source is redis")
    };
    assert_eq!(events.patterns, vec!["jobs.*"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn defaults_are_the_spec_table() {
    let config = parse_str(MINIMAL).unwrap();
    assert_eq!(config.shutdown_timeout_ms, 30_000);
    assert_eq!(config.control.listen, Address::parse("127.0.0.1:9180").ok());
    assert_eq!(config.control.token, None);
    let pool = &config.pools["php"];
    assert_eq!(pool.max_in_flight, 4);
    assert_eq!(
        (pool.connect_timeout_ms, pool.request_timeout_ms),
        (1000, 60_000)
    );
    assert_eq!((pool.keep_conn, pool.idle_timeout_ms), (true, 10_000));
    let SourceConfig::Amqp(source) = &config.sources[0] else {
        panic!("amqp")
    };
    assert_eq!(
        source.prefetch,
        Some(4),
        "prefetch defaults to the pool's max_in_flight"
    );
    assert_eq!(source.max_attempts, 5);
    assert_eq!(source.retry_delays_ms, vec![1000, 10_000, 60_000, 300_000]);
    assert_eq!(source.max_message_bytes, 16 << 20);
    assert_eq!(source.heartbeat_s, 30);
    assert_eq!(
        (source.ack, source.retry),
        (AckMode::AfterResponse, RetryMode::Republish)
    );
    assert_eq!(source.dead_letter, DeadLetter::Reject);
    assert_eq!(source.declare, Declare::IfMissing);
    assert_eq!(source.job.body, BodyMode::Form);
    assert_eq!(source.job.method, "POST");
    assert_eq!(source.job.content_type, "application/octet-stream");
    assert!(!source.job.require_action_header);

    let redis = parse_str(
        r#"{ "pools": { "p": { "address": "127.0.0.1:9000" } },
             "sources": [ { "name": "r", "kind": "redis", "url": "redis://h", "channels": ["c"],
                            "job": { "pool": "p", "script": "/w.php" } } ] }"#,
    )
    .unwrap();
    let SourceConfig::Redis(redis) = &redis.sources[0] else {
        panic!("redis")
    };
    assert_eq!((redis.backlog, redis.backlog_bytes), (1000, 16 << 20));
}

#[test]
fn declare_and_dead_letter_forms() {
    let with = |field: &str| {
        MINIMAL.replace(
            r#""queue": "jobs","#,
            &format!(r#""queue": "jobs", {field},"#),
        )
    };
    let source = |text: &str| match parse_str(text).unwrap().sources.remove(0) {
        SourceConfig::Amqp(amqp) => amqp,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        source(&with(r#""declare": false"#)).declare,
        Declare::CheckOnly
    );
    let declared = source(&with(
        r#""declare": {"durable": false, "arguments": {"x-queue-type": "quorum"}}"#,
    ));
    let Declare::Exactly { durable, arguments } = declared.declare else {
        panic!("exact declare")
    };
    assert!(!durable);
    assert_eq!(arguments["x-queue-type"], "quorum");
    let dl = source(&with(
        r#""dead_letter": {"exchange": "dlx", "routing_key": "failed"}"#,
    ));
    assert_eq!(
        dl.dead_letter,
        DeadLetter::Publish {
            exchange: "dlx".into(),
            routing_key: "failed".into()
        }
    );
    let err = parse_str(&with(r#""dead_letter": "drop""#)).unwrap_err();
    assert!(err.reason.contains("dead_letter must be"), "{err}");
}

#[test]
fn mistakes_name_the_key_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "prefetchh": 3,"#,
            "unknown field `prefetchh`",
        ),
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "prefetch": 0,"#,
            "prefetch",
        ),
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "prefetch": 70000,"#,
            "invalid value",
        ),
        (
            r#""pool": "php""#,
            r#""pool": "nope""#,
            "no pool named 'nope'",
        ),
        (
            r#""script": "/srv/w.php""#,
            r#""script": "w.php""#,
            "absolute path",
        ),
        (
            r#""kind": "amqp""#,
            r#""kind": "kafka""#,
            "unknown variant `kafka`",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""url": "amqp://127.0.0.1", "tls": {}"#,
            "the URL is plain",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""urls": ["amqps://a", "amqp://b"]"#,
            "mixes TLS and plain",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""url": "amqps://h", "tls": {"ca_file": "/nonexistent/ca.pem"}"#,
            "tls.ca_file",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""url": "amqps://h", "tls": {"client_cert_file": "/etc/hostname"}"#,
            "client_key_file",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""url": "amqps://h", "tls": {"verify": false}"#,
            "unknown field `verify`",
        ),
        (
            r#""url": "amqp://127.0.0.1""#,
            r#""url": "amqps://h", "tls": {"ca_file": "/etc/hostname"}"#,
            "holds no PEM certificate",
        ),
        (
            r#""address": "unix:/tmp/php.sock""#,
            r#""address": "nowhere""#,
            "is not unix:",
        ),
        (r#""name": "q""#, r#""name": "a b""#, "source names"),
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "max_attempts": 0,"#,
            "max_attempts",
        ),
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "retry_delays_ms": [],"#,
            "retry_delays_ms",
        ),
        (
            r#""queue": "jobs","#,
            r#""queue": "jobs", "password_file": "/nonexistent/x","#,
            "password_file",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(MINIMAL.contains(from), "{from}");
        let err = parse_str(&MINIMAL.replace(from, to)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expected), "{to}: got {text}");
    }
    let top = parse_str(r#"{"sorces": []}"#).unwrap_err();
    assert!(top.to_string().contains("unknown field `sorces`"), "{top}");
}

#[test]
fn duplicate_source_names_are_refused() {
    let text = r#"{ "pools": { "p": { "address": "127.0.0.1:9000" } },
        "sources": [
          { "name": "r", "kind": "redis", "url": "redis://h", "channels": ["c"],
            "job": { "pool": "p", "script": "/w.php" } },
          { "name": "r", "kind": "redis", "url": "redis://h", "patterns": ["c*"],
            "job": { "pool": "p", "script": "/w.php" } } ] }"#;
    let err = parse_str(text).unwrap_err();
    assert_eq!(err.key, "sources[1].name");
}

#[test]
fn a_pool_needs_exactly_one_of_address_and_spawn() {
    let both = r#"{ "pools": { "p": { "address": "127.0.0.1:9000",
                                      "spawn": { "command": ["php-cgi"] } } } }"#;
    assert_eq!(parse_str(both).unwrap_err().key, "pools.p.spawn");
    let neither = r#"{ "pools": { "p": {} } }"#;
    assert_eq!(parse_str(neither).unwrap_err().key, "pools.p.address");
    let spawned =
        r#"{ "pools": { "p": { "spawn": { "command": ["php-cgi"], "max_requests": 500 } } } }"#;
    let config = parse_str(spawned).unwrap();
    let spawn = config.pools["p"].spawn.as_ref().unwrap();
    assert_eq!((spawn.processes, spawn.max_requests), (4, 500));
    assert_eq!(spawn.listen, None);
}

#[test]
fn a_spawned_pool_listens_on_loopback_only() {
    let pool = |listen: &str| {
        format!(
            r#"{{ "pools": {{ "p": {{ "spawn": {{ "command": ["php-cgi"], "listen": "{listen}" }} }} }} }}"#
        )
    };
    for good in ["tcp:127.0.0.1:0", "[::1]:9000", "unix:/run/ferry/p.sock"] {
        assert!(parse_str(&pool(good)).is_ok(), "{good}");
    }
    for bad in ["tcp:0.0.0.0:9000", "localhost:9000", "10.0.0.1:9000"] {
        assert_eq!(
            parse_str(&pool(bad)).unwrap_err().key,
            "pools.p.spawn.listen",
            "{bad}"
        );
    }
}

#[test]
fn syntax_errors_give_the_position() {
    let err = parse_str("{\n  \"pools\": {,}\n}").unwrap_err();
    assert_eq!(err.key, "line 2 column 13");
}

#[test]
fn resp_endpoint_keys_have_redis_defaults_and_checks() {
    let endpoint = |extra: &str| {
        format!(
            r#"{{"pools": {{"php": {{"address": "unix:/tmp/php.sock"}}}},
                "sources": [{{"name": "local", "kind": "resp_endpoint",
                  "listen": "127.0.0.1:6380", "channels": ["jobs"] {extra},
                  "job": {{"pool": "php", "script": "/srv/w.php"}}}}]}}"#
        )
    };
    let config = parse_str(&endpoint("")).unwrap();
    let SourceConfig::RespEndpoint(source) = &config.sources[0] else {
        panic!("not an endpoint");
    };
    assert_eq!(source.max_clients, 10_000);
    assert_eq!(source.client_output_buffer_bytes, 32 << 20);
    assert_eq!(source.password, None);
    for (extra, expected) in [
        (r#", "max_clients": 0"#, "max_clients"),
        (
            r#", "client_output_buffer_bytes": 10"#,
            "client_output_buffer_bytes",
        ),
        (r#", "max_message_bytes": 0"#, "max_message_bytes"),
        (r#", "channels": []"#, "duplicate field `channels`"),
        (r#", "patterns": ["a*"]"#, "unknown field `patterns`"),
    ] {
        let err = parse_str(&endpoint(extra)).unwrap_err();
        assert!(err.to_string().contains(expected), "{extra}: got {err}");
    }
}

#[test]
fn the_contrib_example_is_a_valid_configuration() {
    let text = include_str!("../../contrib/ferry.example.json");
    // Keys and types (the password file only exists on a real host).
    let config: Config = serde_json::from_str(text).unwrap();
    assert_eq!(config.sources.len(), 3);
    assert_eq!(config.pools["php"].status_path.as_deref(), Some("/status"));
}

fn stream_source(extra: &str) -> String {
    format!(
        r#"{{"pools": {{"php": {{"address": "unix:/php.sock", "request_timeout_ms": 20000}}}},
  "sources": [{{"name": "orders", "kind": "redis_stream", "url": "redis://127.0.0.1:6379/2",
    "stream": "orders", "group": "ferry" {extra},
    "job": {{"pool": "php", "script": "/w.php"}}}}]}}"#
    )
}

#[test]
fn a_stream_source_resolves_its_defaults() {
    let config = parse_str(&stream_source("")).unwrap();
    let SourceConfig::RedisStream(s) = &config.sources[0] else {
        panic!("a stream source")
    };
    assert_eq!(s.consumer, Some(format!("{}-orders", host_name())));
    assert_eq!(s.claim_idle_ms, Some(50_000), "request_timeout_ms + 30000");
    assert_eq!((s.start.as_str(), s.create_group), ("$", true));
    assert_eq!(s.body, StreamBody::Form);
    assert_eq!(s.dead_letter, StreamDeadLetter::Stream);
    assert_eq!(s.dead_stream(), "orders.ferry-dead");
    assert_eq!((s.resp, s.urls[0].db, s.max_attempts), (3, 2, 5));
    assert_eq!(config.sources[0].kind(), "redis_stream");

    let config = parse_str(&stream_source(
        r#", "consumer": "c1", "start": "0", "create_group": false, "body": {"field": "payload"},
           "claim_idle_ms": 5000, "dead_letter": "discard", "resp": 2"#,
    ))
    .unwrap();
    let SourceConfig::RedisStream(s) = &config.sources[0] else {
        panic!("a stream source")
    };
    assert_eq!(s.consumer.as_deref(), Some("c1"));
    assert_eq!(s.body, StreamBody::Field("payload".into()));
    assert_eq!(s.dead_letter, StreamDeadLetter::Discard);
    assert_eq!(
        (s.claim_idle_ms, s.resp, s.create_group),
        (Some(5000), 2, false)
    );
}

#[test]
fn stream_source_mistakes_name_the_key() {
    for (extra, key) in [
        (r#", "start": "latest""#, "sources[0] (\"orders\").start"),
        (r#", "consumer": """#, "sources[0] (\"orders\").consumer"),
        (r#", "resp": 4"#, "sources[0] (\"orders\").resp"),
        (
            r#", "claim_idle_ms": 0"#,
            "sources[0] (\"orders\").claim_idle_ms",
        ),
        (
            r#", "max_attempts": 0"#,
            "sources[0] (\"orders\").max_attempts",
        ),
    ] {
        let error = parse_str(&stream_source(extra)).unwrap_err();
        assert_eq!(error.key, key, "{extra}: {error}");
    }
    let error = parse_str(&stream_source(r#", "body": "raw""#)).unwrap_err();
    assert!(error.reason.contains("body must be"), "{error}");
    let error = parse_str(&stream_source(r#", "dead_letter": "reject""#)).unwrap_err();
    assert!(error.reason.contains("unknown variant"), "{error}");
    let error = parse_str(&stream_source(r#", "channels": ["x"]"#)).unwrap_err();
    assert!(error.reason.contains("unknown field `channels`"), "{error}");
    let raw_job = stream_source("").replace(
        r#""script": "/w.php""#,
        r#""script": "/w.php", "body": "raw""#,
    );
    let error = parse_str(&raw_job).unwrap_err();
    assert_eq!(error.key, "sources[0] (\"orders\").job.body");
    let empty = stream_source("").replace(r#""group": "ferry""#, r#""group": """#);
    assert_eq!(
        parse_str(&empty).unwrap_err().key,
        "sources[0] (\"orders\").group"
    );
}

#[test]
fn urls_list_the_nodes_and_url_is_one_node() {
    let one = parse_str(MINIMAL).unwrap();
    let SourceConfig::Amqp(amqp) = &one.sources[0] else {
        panic!("amqp")
    };
    assert_eq!(amqp.urls.len(), 1, "url becomes a list of one node");
    let dir = temp_dir("urls");
    std::fs::write(dir.join("secret"), "pw\n").unwrap();
    let text = MINIMAL.replace(
        r#""url": "amqp://127.0.0.1""#,
        &format!(
            r#""urls": ["amqp://u@r1:5672", "amqp://u@r2:5673/%2f"], "password_file": "{}/secret""#,
            dir.display()
        ),
    );
    let SourceConfig::Amqp(amqp) = parse_str(&text).unwrap().sources.remove(0) else {
        panic!("amqp")
    };
    let nodes: Vec<_> = amqp
        .urls
        .iter()
        .map(|u| (u.host.as_str(), u.port, u.password.expose()))
        .collect();
    assert_eq!(
        nodes,
        [("r1", 5672, "pw"), ("r2", 5673, "pw")],
        "password_file applies to every node"
    );
    std::fs::remove_dir_all(dir).unwrap();
    let redis = r#"{ "pools": { "p": { "address": "127.0.0.1:9000" } },
      "sources": [ { "name": "r", "kind": "redis", "urls": ["redis://a:6379", "redis://b:6380"],
                     "channels": ["c"], "job": { "pool": "p", "script": "/w.php" } } ] }"#;
    let SourceConfig::Redis(redis) = parse_str(redis).unwrap().sources.remove(0) else {
        panic!("redis")
    };
    assert_eq!(redis.urls[1].port, 6380);
    let SourceConfig::RedisStream(stream) =
        parse_str(&stream_source("")).unwrap().sources.remove(0)
    else {
        panic!("stream")
    };
    assert_eq!(stream.urls.len(), 1);
}

#[test]
fn url_and_urls_mistakes_name_the_key() {
    let with = |to: &str| MINIMAL.replace(r#""url": "amqp://127.0.0.1","#, to);
    let cases: &[(&str, &str, &str)] = &[
        (
            r#""url": "amqp://a", "urls": ["amqp://b"],"#,
            r#"sources[0] ("q").urls"#,
            "either url or urls",
        ),
        ("", r#"sources[0] ("q").url"#, "missing"),
        (r#""urls": [],"#, r#"sources[0] ("q").url"#, "missing"),
        (
            r#""urls": ["amqp://a", "amqp://a"],"#,
            r#"sources[0] ("q").urls[1]"#,
            "listed twice",
        ),
    ];
    for (to, key, reason) in cases {
        let err = parse_str(&with(to)).unwrap_err();
        assert_eq!(err.key, *key, "{to}: {err}");
        assert!(err.reason.contains(reason), "{to}: {err}");
    }
    let bad = parse_str(&with(r#""urls": ["amqp://a", "http://b"],"#)).unwrap_err();
    assert!(bad.reason.starts_with("urls[1]: "), "{bad}");
    let many: Vec<String> = (0..=MAX_NODES)
        .map(|n| format!("\"amqp://h{n}\""))
        .collect();
    let err = parse_str(&with(&format!(r#""urls": [{}],"#, many.join(", ")))).unwrap_err();
    assert_eq!(err.key, r#"sources[0] ("q").urls"#);
}

#[test]
fn queue_type_defaults_to_classic_and_must_agree_with_declare() {
    let with = |field: &str| {
        MINIMAL.replace(
            r#""queue": "jobs","#,
            &format!(r#""queue": "jobs", {field},"#),
        )
    };
    let source = |text: &str| match parse_str(text).unwrap().sources.remove(0) {
        SourceConfig::Amqp(amqp) => amqp,
        other => panic!("{other:?}"),
    };
    assert_eq!(source(MINIMAL).queue_type, Some(QueueType::Classic));
    assert_eq!(
        source(&with(r#""queue_type": "quorum""#)).queue_type,
        Some(QueueType::Quorum)
    );
    // An object naming the same type, or none, is fine.
    source(&with(
        r#""queue_type": "quorum", "declare": {"arguments": {"x-queue-type": "quorum"}}"#,
    ));
    source(&with(r#""queue_type": "quorum", "declare": {}"#));
    // Without queue_type, declare.arguments says what the queue is, as it always did.
    source(&with(
        r#""declare": {"arguments": {"x-queue-type": "quorum"}}"#,
    ));
    let err = parse_str(&with(
        r#""queue_type": "classic", "declare": {"arguments": {"x-queue-type": "quorum"}}"#,
    ))
    .unwrap_err();
    assert_eq!(
        err.key,
        r#"sources[0] ("q").declare.arguments.x-queue-type"#
    );
    let err = parse_str(&with(
        r#""queue_type": "quorum", "declare": {"durable": false}"#,
    ))
    .unwrap_err();
    assert_eq!(err.key, r#"sources[0] ("q").declare.durable"#);
    let err = parse_str(&with(r#""queue_type": "stream""#)).unwrap_err();
    assert!(err.reason.contains("unknown variant `stream`"), "{err}");
}

#[test]
fn a_tls_url_builds_a_client_and_a_reload_compares_it() {
    let tls = MINIMAL.replace(
        r#""url": "amqp://127.0.0.1""#,
        r#""url": "amqps://127.0.0.1", "tls": {"insecure_skip_verify": true}"#,
    );
    let one = parse_str(&tls).unwrap();
    let two = parse_str(&tls).unwrap();
    let client = one.sources[0].tls_client().expect("a TLS client");
    assert!(client.insecure);
    assert_eq!(one, two, "the same file loads equal");
    let other = tls.replace("true}", r#"true, "server_name": "rabbit"}"#);
    let other = parse_str(&other).unwrap();
    assert_ne!(
        one.sources[0], other.sources[0],
        "a changed tls block is a change"
    );
    assert!(parse_str(MINIMAL).unwrap().sources[0]
        .tls_client()
        .is_none());
}

fn sentinel_source(sentinel: &str, extra: &str) -> Result<Config, ConfigError> {
    parse_str(&format!(
        r#"{{ "pools": {{ "p": {{ "address": "127.0.0.1:9000" }} }},
      "sources": [ {{ "name": "r", "kind": "redis", {extra} "sentinel": {sentinel},
                     "channels": ["c"], "job": {{ "pool": "p", "script": "/w.php" }} }} ] }}"#
    ))
}

#[test]
fn a_sentinel_block_names_the_master_and_its_sentinels() {
    let dir = std::env::temp_dir().join(format!("ferry-sentinel-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("master"), "mpw\n").unwrap();
    std::fs::write(dir.join("sentinel"), "spw\n").unwrap();
    let config = sentinel_source(
        &format!(
            r#"{{ "master": "mymaster", "addresses": ["10.0.0.1:26380", "s2", "[::1]:26381"],
                 "password_file": "{}/sentinel", "master_username": "ferry", "db": 2 }}"#,
            dir.display()
        ),
        &format!(r#""password_file": "{}/master","#, dir.display()),
    )
    .unwrap();
    let SourceConfig::Redis(redis) = &config.sources[0] else {
        panic!("redis")
    };
    assert!(redis.urls.is_empty(), "the sentinels name the master");
    let sentinel = redis.sentinel.as_ref().unwrap();
    assert_eq!(
        sentinel.nodes,
        [
            ("10.0.0.1".to_string(), 26380),
            ("s2".to_string(), 26379),
            ("::1".to_string(), 26381)
        ]
    );
    assert_eq!(sentinel.password.as_ref().unwrap().expose(), "spw");
    let url = sentinel.master_url("10.0.0.9", 6390);
    assert_eq!(
        (url.port, url.username.as_deref(), url.db),
        (6390, Some("ferry"), 2)
    );
    assert_eq!(url.password.unwrap().expose(), "mpw");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sentinel_mistakes_name_the_key() {
    let cases = [
        (
            r#"{ "master": "m", "addresses": ["s:1"] }"#,
            r#""url": "redis://a","#,
            "sentinel",
        ),
        (
            r#"{ "master": "", "addresses": ["s:1"] }"#,
            "",
            "sentinel.master",
        ),
        (
            r#"{ "master": "m", "addresses": [] }"#,
            "",
            "sentinel.addresses",
        ),
        (
            r#"{ "master": "m", "addresses": ["s:1", "s:1"] }"#,
            "",
            "sentinel.addresses[1]",
        ),
        (
            r#"{ "master": "m", "addresses": ["s:99999"] }"#,
            "",
            "sentinel.addresses[0]",
        ),
        (
            r#"{ "master": "m", "addresses": ["s:1"] }"#,
            r#""tls": {},"#,
            "tls",
        ),
    ];
    for (sentinel, extra, key) in cases {
        let err = sentinel_source(sentinel, extra).unwrap_err();
        assert_eq!(
            err.key,
            format!(r#"sources[0] ("r").{key}"#),
            "{sentinel} {extra}"
        );
    }
    let err =
        sentinel_source(r#"{ "master": "m", "addresses": ["s:1"], "port": 1 }"#, "").unwrap_err();
    assert!(err.reason.contains("port"), "{err:?}");
}
