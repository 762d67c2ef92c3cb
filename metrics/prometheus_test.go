package metrics

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gathered returns the metric of family name whose labels are exactly labels
// ("k=v" pairs, sorted), or nil.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels ...string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName()+"="+l.GetValue())
			}
			if slices.Equal(got, labels) {
				return m
			}
		}
	}
	return nil
}

func newTestPrometheus(t *testing.T, cfg PrometheusConfig) (*Prometheus, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	p, err := NewPrometheus(cfg)
	if err != nil {
		t.Fatalf("NewPrometheus: %v", err)
	}
	return p, reg
}

func TestPrometheusRecordsEachKind(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	p.Increment("consumer.run.count", 2)
	p.Increment("consumer.run.count", 3)
	p.Gauge("consumer.dlq_buffer.len", 4, Tag{"partition", "1"})
	p.Gauge("consumer.dlq_buffer.len", 5, Tag{"partition", "1"})
	p.Timing("consumer.poll.time", 250*time.Millisecond)
	p.Timing("consumer.poll.time", 750*time.Millisecond)
	p.Timing("consumer.latency", 250*time.Millisecond)
	p.Timing("consumer.latency", 750*time.Millisecond)

	if m := gathered(t, reg, "creek_consumer_run_total"); m.GetCounter().GetValue() != 5 {
		t.Errorf("counter = %v, want 5", m)
	}
	if m := gathered(t, reg, "creek_consumer_dlq_buffer_len", "partition=1"); m.GetGauge().GetValue() != 5 {
		t.Errorf("gauge = %v, want 5", m)
	}
	if m := gathered(t, reg, "creek_consumer_poll_time_seconds_total"); m.GetCounter().GetValue() != 1 {
		t.Errorf("buffered timing = %v, want a counter of 1 s", m)
	}
	h := gathered(t, reg, "creek_consumer_latency_seconds").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 1 {
		t.Errorf("histogram has %d samples summing to %vs, want 2 summing to 1s", h.GetSampleCount(), h.GetSampleSum())
	}
}

// A metric outside the catalog keeps the names and HELP of before the catalog.
func TestPrometheusOwnMetricsKeepTheirNames(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	p.Increment("jobs.done.count", 2, Tag{"queue", "a"})
	p.Gauge("jobs.queued", 4)
	p.Timing("jobs.run", 250*time.Millisecond)
	p.Timing("jobs.run", 750*time.Millisecond)
	// A catalog name recorded as another kind than its type is not the
	// catalog's metric.
	p.Gauge("consumer.run.count", 7)

	if m := gathered(t, reg, "creek_jobs_done_count_total", "queue=a"); m.GetCounter().GetValue() != 2 {
		t.Errorf("counter = %v, want 2", m)
	}
	if m := gathered(t, reg, "creek_jobs_queued"); m.GetGauge().GetValue() != 4 {
		t.Errorf("gauge = %v, want 4", m)
	}
	h := gathered(t, reg, "creek_jobs_run_seconds").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 1 {
		t.Errorf("histogram has %d samples summing to %vs, want 2 summing to 1s", h.GetSampleCount(), h.GetSampleSum())
	}
	if m := gathered(t, reg, "creek_consumer_run_count"); m.GetGauge().GetValue() != 7 {
		t.Errorf("catalog counter recorded as a gauge = %v, want a gauge of 7", m)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	help := map[string]string{}
	for _, f := range families {
		help[f.GetName()] = f.GetHelp()
	}
	for name, want := range map[string]string{
		"creek_jobs_done_count_total": "creek metric jobs.done.count.",
		"creek_jobs_queued":           "creek metric jobs.queued.",
		"creek_jobs_run_seconds":      "creek metric jobs.run.",
		"creek_consumer_run_count":    "creek metric consumer.run.count.",
	} {
		if help[name] != want {
			t.Errorf("HELP of %s = %q, want %q", name, help[name], want)
		}
	}
}

func TestPromCatalogName(t *testing.T) {
	// Before the catalog named them, the first three were
	// creek_consumer_run_count_total, creek_consumer_invalid_message_count_total and
	// creek_consumer_partitions_assigned_count_total, buffered timings were
	// histograms named like creek_consumer_poll_time_seconds, and gauges had no
	// unit.
	for name, want := range map[string]string{
		"consumer.run.count":                 "creek_consumer_run_total",
		"consumer.invalid_message.count":     "creek_consumer_invalid_message_total",
		"consumer.partitions_assigned.count": "creek_consumer_partitions_assigned_total",
		"spans.buffer.process_spans.count":   "creek_spans_buffer_process_spans_total",
		"consumer.pause":                     "creek_consumer_pause_total",
		"spans.buffer.dropped_spans":         "creek_spans_buffer_dropped_spans_total",
		"spans.buffer.flusher.segment_bytes": "creek_spans_buffer_flusher_segment_bytes_total",
		"metrics.prometheus.dropped_total":   "creek_metrics_prometheus_dropped_total",
		"consumer.poll.time":                 "creek_consumer_poll_time_seconds_total",
		"consumer.latency":                   "creek_consumer_latency_seconds",
		"spans.buffer.process_spans":         "creek_spans_buffer_process_spans_seconds",
		"consumer.dlq_buffer.len":            "creek_consumer_dlq_buffer_len",
		"spans.buffer.flusher.drift":         "creek_spans_buffer_flusher_drift_seconds",
		"spans.buffer.flusher.memory_ratio":  "creek_spans_buffer_flusher_memory_ratio",
	} {
		d, ok := catalogByName[name]
		if !ok {
			t.Errorf("%s is not in the catalog", name)
			continue
		}
		if got := promCatalogName(DefaultPrefix, d); got != want {
			t.Errorf("%s is exposed as %s, want %s", name, got, want)
		}
	}
	if got := promCatalogName("", catalogByName["consumer.run.count"]); got != "consumer_run_total" {
		t.Errorf("without prefix consumer.run.count is %s, want consumer_run_total", got)
	}
}

func TestPrometheusBuckets(t *testing.T) {
	upper := func(reg *prometheus.Registry, name string) float64 {
		b := gathered(t, reg, name).GetHistogram().GetBucket()
		if len(b) == 0 {
			t.Fatalf("%s has no buckets", name)
		}
		return b[len(b)-1].GetUpperBound()
	}
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	p.Timing("consumer.latency", time.Minute)
	p.Timing("spans.buffer.process_spans", time.Millisecond)
	if got := upper(reg, "creek_consumer_latency_seconds"); got != 600 {
		t.Errorf("consumer.latency's last bucket is %v s, want 600", got)
	}
	if got := upper(reg, "creek_spans_buffer_process_spans_seconds"); got != 10 {
		t.Errorf("spans.buffer.process_spans' last bucket is %v s, want 10", got)
	}

	p, reg = newTestPrometheus(t, PrometheusConfig{Buckets: []float64{1, 2}})
	p.Timing("consumer.latency", time.Minute)
	if got := upper(reg, "creek_consumer_latency_seconds"); got != 2 {
		t.Errorf("with configured buckets consumer.latency's last bucket is %v s, want 2", got)
	}

	for name := range longTimings {
		if catalogByName[name].Type != TypeTimingObservation {
			t.Errorf("longTimings lists %s, which is not a timing of one operation in the catalog", name)
		}
	}
}

func TestPrometheusNegativeBufferedTimingIsDropped(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	p.Timing("consumer.poll.time", time.Second)
	p.Timing("consumer.poll.time", -time.Second)
	if got := gathered(t, reg, "creek_consumer_poll_time_seconds_total").GetCounter().GetValue(); got != 1 {
		t.Errorf("buffered timing = %v s, want 1", got)
	}
	drops := gathered(t, reg, "creek_metrics_prometheus_dropped_total", "metric=consumer.poll.time", "reason="+dropNegativeCount)
	if got := drops.GetCounter().GetValue(); got != 1 {
		t.Errorf("dropped{reason=%s} = %v, want 1", dropNegativeCount, got)
	}
}

// Through a Buffer, as the consumer loop records them, a second's time spent adds
// to the counter once per flush.
func TestPrometheusBehindABuffer(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	buf, err := NewBuffer(p, BufferConfig{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	timer := buf.Timer("consumer.poll.time")
	for range 4 {
		timer.Add(250 * time.Millisecond)
	}
	buf.Flush()
	timer.Add(500 * time.Millisecond)
	buf.Flush()
	if got := gathered(t, reg, "creek_consumer_poll_time_seconds_total").GetCounter().GetValue(); got != 1.5 {
		t.Errorf("consumer.poll.time = %v s, want 1.5", got)
	}
}

func TestPrometheusLabels(t *testing.T) {
	tests := []struct {
		name       string
		cfg        PrometheusConfig
		record     func(p *Prometheus)
		family     string
		labels     []string
		want       float64
		wantDrops  float64
		dropReason string
	}{
		{
			name: "learned from first use, order free",
			record: func(p *Prometheus) {
				p.Increment("c", 1, Tag{"b", "2"}, Tag{"a", "1"})
				p.Increment("c", 1, Tag{"a", "1"}, Tag{"b", "2"})
			},
			family: "creek_c_total", labels: []string{"a=1", "b=2"}, want: 2,
		},
		{
			name: "unexpected tag dropped and counted, value kept",
			record: func(p *Prometheus) {
				p.Increment("c", 1, Tag{"a", "1"})
				p.Increment("c", 1, Tag{"a", "1"}, Tag{"surprise", "x"})
			},
			family: "creek_c_total", labels: []string{"a=1"}, want: 2,
			wantDrops: 1, dropReason: dropUnexpectedTag,
		},
		{
			name:   "missing tag is an empty label",
			record: func(p *Prometheus) { p.Increment("c", 1, Tag{"a", "1"}); p.Increment("c", 1) },
			family: "creek_c_total", labels: []string{"a="}, want: 1,
		},
		{
			name:   "declared labels",
			cfg:    PrometheusConfig{Labels: map[string][]string{"c": {"shard", "cause"}}},
			record: func(p *Prometheus) { p.Increment("c", 1, Tag{"shard", "3"}) },
			family: "creek_c_total", labels: []string{"cause=", "shard=3"}, want: 1,
		},
		{
			name:   "negative increment dropped and counted",
			record: func(p *Prometheus) { p.Increment("c", 2); p.Increment("c", -1) },
			family: "creek_c_total", want: 2,
			wantDrops: 1, dropReason: dropNegativeCount,
		},
		{
			name:   "own prefix",
			cfg:    PrometheusConfig{Prefix: "svc."},
			record: func(p *Prometheus) { p.Gauge("spans.buffer.drift", 7) },
			family: "svc_spans_buffer_drift", want: 7,
		},
		{
			name:   "no prefix",
			cfg:    PrometheusConfig{NoPrefix: true},
			record: func(p *Prometheus) { p.Gauge("spans.buffer.drift", 7) },
			family: "spans_buffer_drift", want: 7,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, reg := newTestPrometheus(t, tt.cfg)
			tt.record(p)
			m := gathered(t, reg, tt.family, tt.labels...)
			if m == nil {
				t.Fatalf("no %s%v gathered", tt.family, tt.labels)
			}
			if got := m.GetCounter().GetValue() + m.GetGauge().GetValue(); got != tt.want {
				t.Errorf("%s = %v, want %v", tt.family, got, tt.want)
			}
			if tt.wantDrops > 0 {
				drops := gathered(t, reg, promName(p.prefix)+"metrics_prometheus_dropped_total", "metric=c", "reason="+tt.dropReason)
				if got := drops.GetCounter().GetValue(); got != tt.wantDrops {
					t.Errorf("dropped{reason=%s} = %v, want %v", tt.dropReason, got, tt.wantDrops)
				}
			}
		})
	}
}

func TestPrometheusNameTakenElsewhereIsDroppedNotPanicking(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "creek_c_total", Help: "someone else's"}))
	p.Increment("c", 1)
	drops := gathered(t, reg, "creek_metrics_prometheus_dropped_total", "metric=c", "reason="+dropNotRegistrable)
	if got := drops.GetCounter().GetValue(); got != 1 {
		t.Errorf("dropped{reason=%s} = %v, want 1", dropNotRegistrable, got)
	}
}

func TestPrometheusTwoBackendsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		p, err := NewPrometheus(PrometheusConfig{Registerer: reg})
		if err != nil {
			t.Fatalf("NewPrometheus on a shared registry: %v", err)
		}
		p.Increment("c", 1)
	}
	if got := gathered(t, reg, "creek_c_total").GetCounter().GetValue(); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
}

func TestNewPrometheusRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  PrometheusConfig
		want string
	}{
		{"bad label", PrometheusConfig{Registerer: prometheus.NewRegistry(), Labels: map[string][]string{"c": {"shard-id"}}}, `label "shard-id"`},
		{"label twice", PrometheusConfig{Registerer: prometheus.NewRegistry(), Labels: map[string][]string{"c": {"a", "a"}}}, "lists a label twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPrometheus(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewPrometheus = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// TestPrometheusHandlerServesItsOwnRegistry: without a Registerer the backend makes a
// registry, and Handler serves it with creek's figures and the Go collector's.
func TestPrometheusHandlerServesItsOwnRegistry(t *testing.T) {
	p, err := NewPrometheus(PrometheusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p.Increment("consumer.run.count", 3)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "creek_consumer_run_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics = %d:\n%s\nwant creek_consumer_run_total 3 and the Go collector's go_goroutines", rec.Code, body)
	}
}

// TestForgetGaugeDropsTheSeries: through a Buffer, a forgotten gauge is neither
// sent again nor left on the scrape, and its other series stay.
func TestForgetGaugeDropsTheSeries(t *testing.T) {
	p, err := NewPrometheus(PrometheusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBuffer(p, BufferConfig{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p0 := []Tag{{Key: "topic", Value: "t"}, {Key: "partition", Value: "0"}}
	p1 := []Tag{{Key: "topic", Value: "t"}, {Key: "partition", Value: "1"}}
	b.Gauge("consumer.lag", 7, p0...)
	b.Gauge("consumer.lag", 9, p1...)
	b.Flush()
	b.Gauge("consumer.lag", 8, p0...) // set, not flushed: must not come back
	b.ForgetGauge("consumer.lag", p0...)
	b.Flush()
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if strings.Contains(body, `creek_consumer_lag{partition="0"`) {
		t.Errorf("the forgotten series is still scraped:\n%s", body)
	}
	if !strings.Contains(body, `creek_consumer_lag{partition="1",topic="t"} 9`) {
		t.Errorf("the other series is gone:\n%s", body)
	}
}
