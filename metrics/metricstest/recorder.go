package metricstest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creekstream/creek/metrics"
)

// Recorder is a metrics.Metrics that keeps every metric in memory for tests to
// assert on. Series are told apart by name and tag set, in any order; names are kept
// without a prefix. The zero value is ready to use and safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	counters map[string]int64
	gauges   map[string]float64
	timings  map[string][]time.Duration
	// changed is closed and replaced on every write, to wake Wait.
	changed chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// kind keeps a counter, a gauge and a timing of one name apart.
type kind byte

const (
	kindCounter kind = 'c'
	kindGauge   kind = 'g'
	kindTiming  kind = 't'
)

// recorderKey identifies a series: its kind, name and tags sorted, so that the order
// a caller lists tags in does not make a new series. Quoting keeps any two tag sets
// apart whatever bytes they hold.
func recorderKey(k kind, name string, tags []metrics.Tag) string {
	sorted := slices.Clone(tags)
	slices.SortFunc(sorted, func(a, b metrics.Tag) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	var sb strings.Builder
	sb.WriteByte(byte(k))
	sb.WriteString(strconv.Quote(name))
	for _, t := range sorted {
		sb.WriteString(strconv.Quote(t.Key))
		sb.WriteString(strconv.Quote(t.Value))
	}
	return sb.String()
}

// Increment adds value to a counter.
func (r *Recorder) Increment(name string, value int64, tags ...metrics.Tag) {
	key := recorderKey(kindCounter, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counters == nil {
		r.counters = map[string]int64{}
	}
	r.counters[key] += value
	r.notify()
}

// Gauge sets a gauge.
func (r *Recorder) Gauge(name string, value float64, tags ...metrics.Tag) {
	key := recorderKey(kindGauge, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gauges == nil {
		r.gauges = map[string]float64{}
	}
	r.gauges[key] = value
	r.notify()
}

// ForgetGauge drops a gauge, as a backend that keeps series (Prometheus) does;
// GaugeValue then reports it unset.
func (r *Recorder) ForgetGauge(name string, tags ...metrics.Tag) {
	key := recorderKey(kindGauge, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.gauges, key)
	r.notify()
}

// Timing records one duration.
func (r *Recorder) Timing(name string, d time.Duration, tags ...metrics.Tag) {
	key := recorderKey(kindTiming, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timings == nil {
		r.timings = map[string][]time.Duration{}
	}
	r.timings[key] = append(r.timings[key], d)
	r.notify()
}

// notify wakes every Wait; r.mu is held.
func (r *Recorder) notify() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Counter returns the sum of the counter with exactly this name and tag set.
func (r *Recorder) Counter(name string, tags ...metrics.Tag) int64 {
	key := recorderKey(kindCounter, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counters[key]
}

// GaugeValue returns the last value of the gauge with exactly this name and tag set, and
// whether it was ever set.
func (r *Recorder) GaugeValue(name string, tags ...metrics.Tag) (float64, bool) {
	key := recorderKey(kindGauge, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.gauges[key]
	return v, ok
}

// Timings returns, in the order they were recorded, the durations of the timing with
// exactly this name and tag set.
func (r *Recorder) Timings(name string, tags ...metrics.Tag) []time.Duration {
	key := recorderKey(kindTiming, name, tags)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.timings[key])
}

// Wait returns when cond reports true, re-checking it after every write, or returns
// ctx's error when ctx is done first. cond may call the Recorder's accessors.
func (r *Recorder) Wait(ctx context.Context, cond func() bool) error {
	for {
		r.mu.Lock()
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		// The channel is taken before cond runs, so a write after cond looked
		// still wakes this loop.
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitCounter waits until the counter with this name and tag set reaches at least
// want. The error says what it waited for and what it saw, and wraps ctx's error.
func (r *Recorder) WaitCounter(ctx context.Context, name string, want int64, tags ...metrics.Tag) error {
	if err := r.Wait(ctx, func() bool { return r.Counter(name, tags...) >= want }); err != nil {
		return fmt.Errorf("metricstest: counter %s%v reached %d, waited for %d: %w", name, tags, r.Counter(name, tags...), want, err)
	}
	return nil
}
