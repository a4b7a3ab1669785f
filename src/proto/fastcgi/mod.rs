//! Placeholder: filled in by the fastcgi codec work.
