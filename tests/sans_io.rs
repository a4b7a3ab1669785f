//! Every test that needs no server, in one binary (one link instead of twenty): the
//! protocol codecs and sessions driven by scripted bytes and a hand-advanced clock, the
//! form encoder (against `php -n`), ferry's dispatch rules, the metrics text (read back by
//! Python's `prometheus_client`), and the replay of the committed fuzz corpus.
//! Everything here is sans-IO (`docs/ARCHITECTURE.md` "Tests in layers"); the tests
//! against real Redis, RabbitMQ and php-fpm keep a binary each, so their tests never run
//! alongside another file's.

#[path = "support/data.rs"]
mod data;

mod sans_io {
    mod amqp_captured;
    mod amqp_codec;
    mod amqp_session;
    mod dispatch_outcome;
    mod dispatch_request;
    mod fastcgi_captured;
    mod fastcgi_codec;
    mod fastcgi_exchange;
    mod fastcgi_hostile;
    mod form_php;
    mod form_props;
    mod form_vectors;
    mod fuzz_corpus;
    mod metrics_prometheus;
    mod metrics_text;
    mod resp_captured;
    mod resp_decode;
    mod resp_pubsub;
    mod resp_server_props;
    mod resp_subscriber;
}
