//! Placeholder: filled in by the amqp codec work.
