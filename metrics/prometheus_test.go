package metrics

import (
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
	p.Increment("consumer.run.count", 2, Tag{"phase", "poll"})
	p.Increment("consumer.run.count", 3, Tag{"phase", "poll"})
	p.Gauge("consumer.dlq_buffer.len", 4, Tag{"partition", "1"})
	p.Gauge("consumer.dlq_buffer.len", 5, Tag{"partition", "1"})
	p.Timing("consumer.poll.time", 250*time.Millisecond)
	p.Timing("consumer.poll.time", 750*time.Millisecond)

	if m := gathered(t, reg, "creek_consumer_run_count_total", "phase=poll"); m.GetCounter().GetValue() != 5 {
		t.Errorf("counter = %v, want 5", m)
	}
	if m := gathered(t, reg, "creek_consumer_dlq_buffer_len", "partition=1"); m.GetGauge().GetValue() != 5 {
		t.Errorf("gauge = %v, want 5", m)
	}
	h := gathered(t, reg, "creek_consumer_poll_time_seconds").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 1 {
		t.Errorf("histogram has %d samples summing to %vs, want 2 summing to 1s", h.GetSampleCount(), h.GetSampleSum())
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
		{"no registerer", PrometheusConfig{}, "Registerer is nil"},
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
