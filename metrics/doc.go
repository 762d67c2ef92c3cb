// Package metrics defines how creek records metrics and provides the places they go.
//
// Everything in creek records through the Metrics interface: counters (Increment),
// gauges (Gauge) and timings (Timing), each with tags. The backends are DogStatsD
// (datadog-go), Prometheus (client_golang) and Noop; package metricstest has an
// in-memory Recorder for tests. The DogStatsD and Prometheus backends put a prefix,
// DefaultPrefix unless configured, in front of every name.
//
// Catalog describes every metric creek emits: its type, unit, tags and meaning. It
// is the source of docs/metrics.md's tables, and tests hold it to the code.
//
// A Buffer sits in front of a backend for figures recorded at a high rate, such as
// those of the consumer loop. It sums counters and timings per name and tag set,
// keeps the last value of gauges, and sends them at most once per flush interval from
// a goroutine it owns. It is correct by construction where Arroyo's Python buffer
// crashed with "dictionary changed size during iteration": writers never modify a map
// that a flush iterates, each value is taken by exactly one flush, and the backend
// is never called from a writer or with a lock writers take. Writing to a series
// already seen takes no lock and does not allocate.
package metrics
