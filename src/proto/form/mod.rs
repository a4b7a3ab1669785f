//! Placeholder: filled in by the form codec work.
