package metrics

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// StatsdClient is the part of a DogStatsD client that DogStatsD uses;
// *statsd.Client from github.com/DataDog/datadog-go/v5/statsd provides it.
type StatsdClient interface {
	Count(name string, value int64, tags []string, rate float64) error
	Gauge(name string, value float64, tags []string, rate float64) error
	Timing(name string, value time.Duration, tags []string, rate float64) error
}

// DogStatsDConfig configures a DogStatsD backend. The zero value is valid.
type DogStatsDConfig struct {
	// Prefix is put in front of every name. Empty means DefaultPrefix.
	Prefix string
	// NoPrefix sends names as recorded, ignoring Prefix, for setups that put the
	// prefix on elsewhere.
	NoPrefix bool
	// Logger receives, at debug level, the errors the client returns. The default
	// discards them.
	Logger *zap.Logger
}

// DogStatsD sends metrics to a DogStatsD agent: counters as counts, gauges as gauges,
// timings in milliseconds, tags as "key:value". It is safe for concurrent use as far
// as the client is.
type DogStatsD struct {
	client StatsdClient
	prefix string
	logger *zap.Logger
}

// NewDogStatsD returns a backend that sends through client. Closing the client stays
// with the caller, after the Buffer in front of it has been closed.
func NewDogStatsD(client StatsdClient, cfg DogStatsDConfig) (*DogStatsD, error) {
	if client == nil {
		return nil, errors.New("metrics: NewDogStatsD needs a client; create one with statsd.New(addr)")
	}
	cfg.Prefix = resolvePrefix(cfg.Prefix, cfg.NoPrefix)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &DogStatsD{client: client, prefix: cfg.Prefix, logger: cfg.Logger}, nil
}

// Increment sends a count.
func (d *DogStatsD) Increment(name string, value int64, tags ...Tag) {
	d.check(name, d.client.Count(d.prefix+name, value, statsdTags(tags), 1))
}

// Gauge sends a gauge.
func (d *DogStatsD) Gauge(name string, value float64, tags ...Tag) {
	d.check(name, d.client.Gauge(d.prefix+name, value, statsdTags(tags), 1))
}

// Timing sends a timing in milliseconds.
func (d *DogStatsD) Timing(name string, dur time.Duration, tags ...Tag) {
	d.check(name, d.client.Timing(d.prefix+name, dur, statsdTags(tags), 1))
}

// check logs a send error; metrics must never fail the code that records them.
func (d *DogStatsD) check(name string, err error) {
	if err != nil {
		d.logger.Debug("dogstatsd send failed", zap.String("metric", name), zap.Error(err))
	}
}

func statsdTags(tags []Tag) []string {
	if len(tags) == 0 {
		return nil
	}
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Key + ":" + t.Value
	}
	return out
}
