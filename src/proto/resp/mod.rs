//! Placeholder: filled in by the resp codec work.
