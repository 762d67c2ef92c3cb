package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// PrometheusConfig configures a Prometheus backend.
type PrometheusConfig struct {
	// Registerer is where the metrics are registered: prometheus.DefaultRegisterer
	// or a registry of your own. Nil means a new registry, with the Go and process
	// collectors, that Handler serves.
	Registerer prometheus.Registerer
	// Prefix is put in front of every name. Empty means DefaultPrefix.
	Prefix string
	// NoPrefix sends names as recorded, ignoring Prefix, for setups that put the
	// prefix on elsewhere.
	NoPrefix bool
	// Labels declares the label names of a metric, by its name without prefix. A
	// metric not listed takes the tags the catalog lists for it and the tag keys
	// of its first use as its labels.
	Labels map[string][]string
	// Buckets are the histogram buckets for timings of one operation, in seconds.
	// Empty means prometheus.DefBuckets, which reach 10 s, extended to 10 minutes
	// for creek's timings that can take minutes: consumer.latency,
	// strategies.reduce.batch_time and strategies.lookup.recovery_wait.
	Buckets []float64
	// Logger is told, once per metric, about tags or values that had to be dropped.
	// The default discards.
	Logger *zap.Logger
}

// Prometheus records metrics as Prometheus collectors. A metric of the catalog (see
// Catalog) is exposed as its type says, named after Prometheus' conventions, with its
// Meaning as HELP and its tags as labels:
//
//   - a counter is a counter <prefix><name>_total, where a trailing "count" word
//     or "_total" is dropped first so that _total appears once: consumer.run.count
//     is creek_consumer_run_total;
//   - a buffered timing (TypeTimingTotal) is a counter of the seconds spent,
//     <prefix><name>_seconds_total, because each value is a sum of time to add
//     up, not the duration of one operation: consumer.poll.time is
//     creek_consumer_poll_time_seconds_total;
//   - a timing of one operation is a histogram <prefix><name>_seconds;
//   - a gauge is a gauge <prefix><name>.
//
// Counters and gauges whose unit is a base unit (seconds, bytes, ratio) end in it,
// once. Dots and other characters Prometheus does not allow become underscores.
//
// A metric the catalog does not list, such as one of your own, keeps the naming of
// earlier versions: a counter <prefix><name>_total, a gauge <prefix><name>, a timing
// a histogram <prefix><name>_seconds, each with the HELP "creek metric <name>.". So
// does a catalog metric recorded as another kind than its type.
//
// A metric's label names are fixed when it is first used (see
// PrometheusConfig.Labels), because Prometheus requires one label set per metric.
// Afterwards a tag with another key is dropped
// and counted, the value is still recorded, and a missing tag records an empty
// label. A negative counter increment or buffered timing, or a metric whose name
// another collector in the registry already uses, drops the value and counts it.
// Every drop is counted in <prefix>metrics_prometheus_dropped_total{metric, reason};
// none panics.
type Prometheus struct {
	reg     prometheus.Registerer
	handler http.Handler
	prefix  string
	labels  map[string][]string
	buckets []float64 // nil unless configured
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

// longTimings are the catalog's timings of one operation that can take minutes:
// a lagging consumer's latency, a batch window, a wait for a table to recover.
// prometheus.DefBuckets would put all of those above 10 s in +Inf.
var longTimings = map[string]bool{
	"consumer.latency":                true,
	"strategies.reduce.batch_time":    true,
	"strategies.lookup.recovery_wait": true,
}

var longBuckets = append(slices.Clone(prometheus.DefBuckets), 30, 60, 120, 300, 600)

// NewPrometheus returns a backend that registers its collectors with
// cfg.Registerer as metrics are first used.
func NewPrometheus(cfg PrometheusConfig) (*Prometheus, error) {
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Registerer = reg
	}
	cfg.Prefix = resolvePrefix(cfg.Prefix, cfg.NoPrefix)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if len(cfg.Buckets) == 0 {
		// nil stands for "the defaults", which depend on the metric.
		cfg.Buckets = nil
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
	own := catalogByName["metrics.prometheus.dropped_total"]
	p := &Prometheus{
		reg:      cfg.Registerer,
		prefix:   cfg.Prefix,
		labels:   labels,
		buckets:  cfg.Buckets,
		logger:   cfg.Logger,
		families: map[familyKey]*family{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: promCatalogName(cfg.Prefix, own),
			Help: promHelp(own),
		}, catalogLabels(own)),
		handler: handlerFor(cfg.Registerer),
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

// promCatalogName is the name under which a catalog metric is exposed. Prometheus'
// conventions (prometheus.io/docs/practices/naming) want a counter to end in
// _total and every name to end in its base unit; a "count" word before _total says
// the same thing twice, so it goes.
func promCatalogName(prefix string, d Description) string {
	name := promName(prefix + d.Name)
	switch d.Type {
	case TypeCounter:
		name = strings.TrimSuffix(name, "_total")
		name = strings.TrimSuffix(name, "_count")
		return withUnit(name, d.Unit) + "_total"
	case TypeTimingTotal:
		return withUnit(name, "seconds") + "_total"
	case TypeTimingObservation:
		return withUnit(name, "seconds")
	}
	return withUnit(name, d.Unit)
}

// withUnit appends unit to name if it is a base unit name does not end in yet.
// Other units, such as messages, are what a count counts and stay out of the name.
func withUnit(name, unit string) string {
	switch unit {
	case "seconds", "bytes", "ratio":
		if !strings.HasSuffix(name, "_"+unit) {
			return name + "_" + unit
		}
	}
	return name
}

// promHelp is a catalog metric's HELP: its meaning, as plain text.
func promHelp(d Description) string {
	return strings.ReplaceAll(d.Meaning, "`", "")
}

// catalogLabels are the label names of a catalog metric's tags, sorted.
func catalogLabels(d Description) []string {
	labels := make([]string, len(d.Tags))
	for i, t := range d.Tags {
		labels[i] = t.Key
	}
	slices.Sort(labels)
	return labels
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

// ForgetGauge removes the gauge series of name and tags, so that a scrape no longer
// shows its last value.
func (p *Prometheus) ForgetGauge(name string, tags ...Tag) {
	p.mu.RLock()
	f := p.families[familyKey{kindGauge, name}]
	p.mu.RUnlock()
	if f == nil || f.gauge == nil {
		return
	}
	values := make([]string, len(f.labels))
	for _, t := range tags {
		if i, ok := slices.BinarySearch(f.labels, promName(t.Key)); ok {
			values[i] = t.Value
		}
	}
	f.gauge.DeleteLabelValues(values...)
}

// Timing adds d, in seconds, to the counter of a buffered timing, or observes it in
// the histogram of any other. A negative buffered timing is dropped and counted.
func (p *Prometheus) Timing(name string, d time.Duration, tags ...Tag) {
	f, values := p.resolve(kindTiming, name, tags)
	if f == nil {
		return
	}
	if f.counter != nil {
		if d < 0 {
			p.drop(f, name, dropNegativeCount, fmt.Sprintf("buffered timing of %v", d))
			return
		}
		if c, err := f.counter.GetMetricWithLabelValues(values...); err == nil {
			c.Add(d.Seconds())
		}
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
	d, inCatalog := catalogByName[key.name]
	inCatalog = inCatalog && d.Type.kind() == key.kind
	labels, declared := p.labels[key.name]
	if !declared {
		if inCatalog {
			labels = catalogLabels(d)
		}
		for _, t := range tags {
			labels = append(labels, promName(t.Key))
		}
		slices.Sort(labels)
		labels = slices.Compact(labels)
	}
	f := &family{labels: labels}
	if inCatalog {
		f.register(p.reg, d.Type, promCatalogName(p.prefix, d), promHelp(d), p.bucketsFor(d.Name))
	} else {
		fq := promName(p.prefix + key.name)
		help := fmt.Sprintf("creek metric %s.", key.name)
		switch key.kind {
		case kindCounter:
			f.register(p.reg, TypeCounter, fq+"_total", help, nil)
		case kindGauge:
			f.register(p.reg, TypeGauge, fq, help, nil)
		case kindTiming:
			f.register(p.reg, TypeTimingObservation, fq+"_seconds", help, p.bucketsFor(key.name))
		}
	}
	p.families[key] = f
	return f
}

// bucketsFor returns the histogram buckets of the timing name.
func (p *Prometheus) bucketsFor(name string) []float64 {
	switch {
	case p.buckets != nil:
		return p.buckets
	case longTimings[name]:
		return longBuckets
	}
	return prometheus.DefBuckets
}

// register makes f's collector for a metric of type t named fq and registers it.
func (f *family) register(reg prometheus.Registerer, t Type, fq, help string, buckets []float64) {
	switch t {
	case TypeCounter, TypeTimingTotal:
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: fq, Help: help}, f.labels)
		f.err = registerOrReuse(reg, f.counter, &f.counter)
	case TypeGauge:
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: fq, Help: help}, f.labels)
		f.err = registerOrReuse(reg, f.gauge, &f.gauge)
	case TypeTimingObservation:
		f.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fq, Help: help, Buckets: buckets}, f.labels)
		f.err = registerOrReuse(reg, f.histogram, &f.histogram)
	}
}

// drop counts a dropped tag or value and logs the first one of each metric.
func (p *Prometheus) drop(f *family, name, reason, detail string) {
	p.dropped.WithLabelValues(name, reason).Inc()
	f.warned.Do(func() {
		p.logger.Warn("prometheus backend dropped part of a metric; later drops of this metric are only counted",
			zap.String("metric", name), zap.String("reason", reason), zap.String("detail", detail))
	})
}

// Handler serves the metrics in Prometheus' text format, from the registry the
// backend made or the Registerer it was given. A Registerer that cannot be read
// (not a prometheus.Gatherer) is served as an error naming the fix.
func (p *Prometheus) Handler() http.Handler { return p.handler }

func handlerFor(reg prometheus.Registerer) http.Handler {
	if reg == prometheus.DefaultRegisterer {
		return promhttp.Handler()
	}
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics: the PrometheusConfig.Registerer cannot be gathered; serve its registry with promhttp.HandlerFor", http.StatusInternalServerError)
		})
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
