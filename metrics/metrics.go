package metrics

import "time"

// Tag is one key-value pair attached to a metric.
type Tag struct {
	Key, Value string
}

// Metrics is where creek records what it does. Implementations must be safe for
// concurrent use.
type Metrics interface {
	// Increment adds value to a counter.
	Increment(name string, value int64, tags ...Tag)
	// Gauge sets a gauge.
	Gauge(name string, value float64, tags ...Tag)
	// Timing records one duration.
	Timing(name string, d time.Duration, tags ...Tag)
}

// GaugeForgetter is a backend that keeps the last value of every gauge series, as
// Prometheus does, and can drop one whose subject is gone (a revoked partition's
// lag), so that it does not go on reporting its last value.
type GaugeForgetter interface {
	ForgetGauge(name string, tags ...Tag)
}

// Noop discards everything. It is the default where no backend is given.
type Noop struct{}

func (Noop) Increment(string, int64, ...Tag)      {}
func (Noop) Gauge(string, float64, ...Tag)        {}
func (Noop) Timing(string, time.Duration, ...Tag) {}
