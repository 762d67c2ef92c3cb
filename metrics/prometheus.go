package metrics

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// PrometheusConfig configures a Prometheus backend.
type PrometheusConfig struct {
	// Registerer is where the metrics are registered: prometheus.DefaultRegisterer
	// or a registry of your own. Required.
	Registerer prometheus.Registerer
	// Prefix is put in front of every name. Empty means DefaultPrefix.
	Prefix string
	// NoPrefix sends names as recorded, ignoring Prefix, for setups that put the
	// prefix on elsewhere.
	NoPrefix bool
	// Labels declares the label names of a metric, by its name without prefix. A
	// metric not listed takes the tag keys of its first use as its labels.
	Labels map[string][]string
	// Buckets are the histogram buckets for timings, in seconds. Empty means
	// prometheus.DefBuckets.
	Buckets []float64
	// Logger is told, once per metric, about tags or values that had to be dropped.
	// The default discards.
	Logger *zap.Logger
}

// Prometheus records metrics as Prometheus collectors: a counter becomes a CounterVec
// named <prefix><name>_total, a gauge a GaugeVec named <prefix><name>, a timing a
// HistogramVec named <prefix><name>_seconds; dots and other characters Prometheus
// does not allow become underscores.
//
// A metric's label names are fixed when it is first used (declared in
// PrometheusConfig.Labels, or else the tag keys of that first use), because
// Prometheus requires one label set per metric. Afterwards a tag with another key is
// dropped and counted, the value is still recorded, and a missing tag records an
// empty label. A negative counter increment, or a metric whose name another
// collector in the registry already uses, drops the value and counts it. Every drop
// is counted in <prefix>metrics_prometheus_dropped_total{metric, reason}; none
// panics.
type Prometheus struct {
	reg     prometheus.Registerer
	prefix  string
	labels  map[string][]string
	buckets []float64
	logger  *zap.Logger
	dropped *prometheus.CounterVec

	// mu guards families, which grows by one entry per metric name and kind.
	mu       sync.RWMutex
	families map[familyKey]*family
}

type familyKey struct {
	kind kind
	name string
}

// family is one metric name's collector and label names; it is immutable once made,
// except for warned.
type family struct {
	labels    []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
	// err is why the family could not be registered; its values are dropped.
	err    error
	warned sync.Once
}

// Reasons for dropping, as the reason label of the dropped counter.
const (
	dropUnexpectedTag  = "unexpected_tag"
	dropNegativeCount  = "negative_counter"
	dropNotRegistrable = "not_registrable"
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// NewPrometheus returns a backend that registers its collectors with
// cfg.Registerer as metrics are first used.
func NewPrometheus(cfg PrometheusConfig) (*Prometheus, error) {
	if cfg.Registerer == nil {
		return nil, errors.New("metrics: PrometheusConfig.Registerer is nil; pass prometheus.DefaultRegisterer or prometheus.NewRegistry()")
	}
	cfg.Prefix = resolvePrefix(cfg.Prefix, cfg.NoPrefix)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if len(cfg.Buckets) == 0 {
		cfg.Buckets = prometheus.DefBuckets
	}
	labels := make(map[string][]string, len(cfg.Labels))
	for name, names := range cfg.Labels {
		for _, l := range names {
			if !labelName.MatchString(l) {
				return nil, fmt.Errorf("metrics: PrometheusConfig.Labels[%q] has label %q; use letters, digits and underscores, not starting with a digit", name, l)
			}
		}
		sorted := slices.Sorted(slices.Values(names))
		if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
			return nil, fmt.Errorf("metrics: PrometheusConfig.Labels[%q] lists a label twice: %v", name, names)
		}
		labels[name] = sorted
	}
	p := &Prometheus{
		reg:      cfg.Registerer,
		prefix:   cfg.Prefix,
		labels:   labels,
		buckets:  cfg.Buckets,
		logger:   cfg.Logger,
		families: map[familyKey]*family{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: promName(cfg.Prefix + "metrics.prometheus.dropped_total"),
			Help: "Tags or values the Prometheus backend could not record, by metric and reason.",
		}, []string{"metric", "reason"}),
	}
	if err := registerOrReuse(p.reg, p.dropped, &p.dropped); err != nil {
		return nil, fmt.Errorf("metrics: registering the dropped counter: %w", err)
	}
	return p, nil
}

// registerOrReuse registers c, or points *dst at the collector of the same type that
// another backend on the same registry registered before.
func registerOrReuse[T prometheus.Collector](reg prometheus.Registerer, c T, dst *T) error {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			*dst = existing
			return nil
		}
	}
	return err
}

// promName turns a creek name into a Prometheus one.
func promName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == ':' {
			return r
		}
		return '_'
	}, name)
}

// Increment adds value to a counter. A negative value is dropped and counted.
func (p *Prometheus) Increment(name string, value int64, tags ...Tag) {
	f, values := p.resolve(kindCounter, name, tags)
	if f == nil {
		return
	}
	if value < 0 {
		p.drop(f, name, dropNegativeCount, fmt.Sprintf("counter incremented by %d", value))
		return
	}
	if c, err := f.counter.GetMetricWithLabelValues(values...); err == nil {
		c.Add(float64(value))
	}
}

// Gauge sets a gauge.
func (p *Prometheus) Gauge(name string, value float64, tags ...Tag) {
	f, values := p.resolve(kindGauge, name, tags)
	if f == nil {
		return
	}
	if g, err := f.gauge.GetMetricWithLabelValues(values...); err == nil {
		g.Set(value)
	}
}

// Timing observes d, in seconds, in a histogram.
func (p *Prometheus) Timing(name string, d time.Duration, tags ...Tag) {
	f, values := p.resolve(kindTiming, name, tags)
	if f == nil {
		return
	}
	if h, err := f.histogram.GetMetricWithLabelValues(values...); err == nil {
		h.Observe(d.Seconds())
	}
}

// resolve returns the family of name and the label values for tags in the family's
// label order, or nil if the family's values are dropped.
func (p *Prometheus) resolve(k kind, name string, tags []Tag) (*family, []string) {
	key := familyKey{k, name}
	p.mu.RLock()
	f := p.families[key]
	p.mu.RUnlock()
	if f == nil {
		f = p.create(key, tags)
	}
	if f.err != nil {
		p.drop(f, name, dropNotRegistrable, f.err.Error())
		return nil, nil
	}
	values := make([]string, len(f.labels))
	for _, t := range tags {
		i, ok := slices.BinarySearch(f.labels, promName(t.Key))
		if !ok {
			p.drop(f, name, dropUnexpectedTag, "tag "+t.Key+" is not one of the labels "+strings.Join(f.labels, ","))
			continue
		}
		values[i] = t.Value
	}
	return f, values
}

func (p *Prometheus) create(key familyKey, tags []Tag) *family {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.families[key]; f != nil {
		return f
	}
	labels, declared := p.labels[key.name]
	if !declared {
		for _, t := range tags {
			labels = append(labels, promName(t.Key))
		}
		slices.Sort(labels)
		labels = slices.Compact(labels)
	}
	f := &family{labels: labels}
	help := fmt.Sprintf("creek metric %s.", key.name)
	fq := promName(p.prefix + key.name)
	switch key.kind {
	case kindCounter:
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: fq + "_total", Help: help}, labels)
		f.err = registerOrReuse(p.reg, f.counter, &f.counter)
	case kindGauge:
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: fq, Help: help}, labels)
		f.err = registerOrReuse(p.reg, f.gauge, &f.gauge)
	case kindTiming:
		f.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fq + "_seconds", Help: help, Buckets: p.buckets}, labels)
		f.err = registerOrReuse(p.reg, f.histogram, &f.histogram)
	}
	p.families[key] = f
	return f
}

// drop counts a dropped tag or value and logs the first one of each metric.
func (p *Prometheus) drop(f *family, name, reason, detail string) {
	p.dropped.WithLabelValues(name, reason).Inc()
	f.warned.Do(func() {
		p.logger.Warn("prometheus backend dropped part of a metric; later drops of this metric are only counted",
			zap.String("metric", name), zap.String("reason", reason), zap.String("detail", detail))
	})
}
