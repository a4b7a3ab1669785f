//! Metrics (issue 4): counters, gauges and histograms rendered in the Prometheus text format.
