package metrics

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapedFamily is one metric family as a scrape of the text format shows it.
type scrapedFamily struct {
	help, typ string
	samples   []scrapedSample
}

type scrapedSample struct {
	name   string // the series' name: the family's, or with _bucket, _sum, _count
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape fetches reg through promhttp, as Prometheus would, and parses the text
// format by family.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*scrapedFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %s, %s:\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	families := map[string]*scrapedFamily{}
	family := func(name string) *scrapedFamily {
		if families[name] == nil {
			families[name] = &scrapedFamily{}
		}
		return families[name]
	}
	var current string
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			family(name).help = help
			current = name
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			family(name).typ = typ
			current = name
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("scrape: cannot read %q", line)
			}
			if !strings.HasPrefix(m[1], current) {
				t.Fatalf("scrape: sample %q outside its family %s", line, current)
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("scrape: %q: %v", line, err)
			}
			labels := map[string]string{}
			for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
				labels[l[1]] = l[2]
			}
			f := family(current)
			f.samples = append(f.samples, scrapedSample{name: m[1], labels: labels, value: v})
		}
	}
	return families
}

// recordCatalogEntry records one value of d, with a value for each of its tags.
// Counters count 3, gauges are 0.25, buffered timings 1.5 s, observations 0.2 s.
func recordCatalogEntry(p *Prometheus, d Description) {
	var tags []Tag
	for _, td := range d.Tags {
		v := "some_" + td.Key
		if len(td.Values) > 0 {
			v = td.Values[0]
		}
		tags = append(tags, Tag{td.Key, v})
	}
	switch d.Type {
	case TypeCounter:
		p.Increment(d.Name, 3, tags...)
	case TypeGauge:
		p.Gauge(d.Name, 0.25, tags...)
	case TypeTimingTotal:
		p.Timing(d.Name, 1500*time.Millisecond, tags...)
	case TypeTimingObservation:
		p.Timing(d.Name, 200*time.Millisecond, tags...)
	}
}

// TestPrometheusExposesTheCatalog records every catalog metric and holds what a
// scrape shows to the catalog: each is one family of the type its catalog type
// implies, named by the rule docs/metrics.md gives, with the meaning as HELP and the
// catalog's tags as labels.
func TestPrometheusExposesTheCatalog(t *testing.T) {
	const dropped = "creek_metrics_prometheus_dropped_total"
	baseUnits := []string{"seconds", "bytes", "ratio"}
	var all []string
	for _, d := range catalog {
		t.Run(d.Name, func(t *testing.T) {
			// A registry of its own tells which family is d's.
			p, reg := newTestPrometheus(t, PrometheusConfig{})
			recordCatalogEntry(p, d)
			families := scrape(t, reg)
			if d.Name != "metrics.prometheus.dropped_total" {
				if f := families[dropped]; f != nil && len(f.samples) > 0 {
					t.Fatalf("recording %s dropped something: %+v", d.Name, f.samples)
				}
				delete(families, dropped)
			}
			if len(families) != 1 {
				t.Fatalf("recording %s exposed %d families, want 1: %v", d.Name, len(families), slices.Sorted(maps.Keys(families)))
			}
			var name string
			var f *scrapedFamily
			for name, f = range families {
			}
			all = append(all, name)

			if !strings.HasPrefix(name, "creek_") {
				t.Errorf("%s lacks the prefix", name)
			}
			if want := strings.ReplaceAll(d.Meaning, "`", ""); f.help == "" || f.help != want {
				t.Errorf("HELP of %s = %q, want the meaning %q", name, f.help, want)
			}
			wantType := map[Type]string{TypeCounter: "counter", TypeGauge: "gauge", TypeTimingTotal: "counter", TypeTimingObservation: "histogram"}[d.Type]
			if f.typ != wantType {
				t.Errorf("%s is a %s, want a %s for a %s", name, f.typ, wantType, d.Type)
			}
			// The name is the catalog's with dots as underscores, then suffixes.
			stem := "creek_" + strings.ReplaceAll(d.Name, ".", "_")
			switch d.Type {
			case TypeCounter:
				base, ok := strings.CutSuffix(name, "_total")
				if !ok || strings.HasSuffix(base, "_total") || strings.HasSuffix(base, "_count") {
					t.Errorf("counter %s does not end in _total exactly once, after a word other than count", name)
				}
				if slices.Contains(baseUnits, d.Unit) && !strings.HasSuffix(base, "_"+d.Unit) {
					t.Errorf("counter %s does not end in its unit %s before _total", name, d.Unit)
				}
				stem = strings.TrimSuffix(strings.TrimSuffix(stem, "_total"), "_count")
				if !strings.HasPrefix(base, stem) {
					t.Errorf("counter %s is not named after %s", name, d.Name)
				}
			case TypeTimingTotal:
				if name != stem+"_seconds_total" {
					t.Errorf("buffered timing %s, want %s_seconds_total", name, stem)
				}
			case TypeTimingObservation:
				if name != stem+"_seconds" {
					t.Errorf("timing %s, want %s_seconds", name, stem)
				}
			case TypeGauge:
				want := stem
				if slices.Contains(baseUnits, d.Unit) && !strings.HasSuffix(stem, "_"+d.Unit) {
					want += "_" + d.Unit
				}
				if name != want {
					t.Errorf("gauge %s, want %s", name, want)
				}
			}
			if d.Type == TypeTimingTotal || d.Type == TypeTimingObservation {
				if d.Unit != "seconds" {
					t.Errorf("timing %s has the unit %q; Prometheus exposes timings in seconds", d.Name, d.Unit)
				}
			}

			checkCatalogSamples(t, d, name, f)
		})
	}

	// All in one registry, as in a program: no two share a name, nothing drops.
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	for _, d := range catalog {
		recordCatalogEntry(p, d)
	}
	families := scrape(t, reg)
	if got, want := slices.Sorted(maps.Keys(families)), slices.Sorted(slices.Values(all)); !slices.Equal(got, want) {
		t.Errorf("one registry exposes %v, want %v", got, want)
	}
	if n := len(families[dropped].samples); n != 1 {
		t.Errorf("%s has %d series, want only the one recorded: %+v", dropped, n, families[dropped].samples)
	}
	// Histograms add _bucket, _sum and _count series, which must not be another
	// family's name.
	for name, f := range families {
		for _, s := range f.samples {
			if other := families[s.name]; s.name != name && other != nil {
				t.Errorf("series %s of %s is also the family %s", s.name, name, s.name)
			}
		}
	}
}

// checkCatalogSamples checks the series of d's family f, named name: one, with
// the catalog's tags as labels and the value recordCatalogEntry recorded.
func checkCatalogSamples(t *testing.T, d Description, name string, f *scrapedFamily) {
	t.Helper()
	wantLabels := map[string]string{}
	for _, td := range d.Tags {
		wantLabels[td.Key] = "some_" + td.Key
		if len(td.Values) > 0 {
			wantLabels[td.Key] = td.Values[0]
		}
	}
	values := map[string]float64{}
	for _, s := range f.samples {
		labels := maps.Clone(s.labels)
		delete(labels, "le")
		if !maps.Equal(labels, wantLabels) {
			t.Errorf("%s has labels %v, want %v", s.name, s.labels, wantLabels)
		}
		if s.name != name+"_bucket" {
			values[s.name] = s.value
		}
	}
	var want map[string]float64
	switch d.Type {
	case TypeCounter:
		want = map[string]float64{name: 3}
	case TypeGauge:
		want = map[string]float64{name: 0.25}
	case TypeTimingTotal:
		want = map[string]float64{name: 1.5}
	case TypeTimingObservation:
		want = map[string]float64{name + "_sum": 0.2, name + "_count": 1}
	}
	if !maps.Equal(values, want) {
		t.Errorf("%s has the values %v, want %v", name, values, want)
	}
}

// A metric of one's own still works next to the catalog's, under the old naming.
func TestPrometheusScrapesOwnMetrics(t *testing.T) {
	p, reg := newTestPrometheus(t, PrometheusConfig{})
	recordCatalogEntry(p, catalogByName["consumer.run.count"])
	p.Increment("my.jobs", 2, Tag{"queue", "a"})
	p.Timing("my.job", time.Second)
	families := scrape(t, reg)
	for name, want := range map[string]scrapedFamily{
		"creek_my_jobs_total":      {help: "creek metric my.jobs.", typ: "counter"},
		"creek_my_job_seconds":     {help: "creek metric my.job.", typ: "histogram"},
		"creek_consumer_run_total": {help: "loop iterations", typ: "counter"},
	} {
		f := families[name]
		if f == nil {
			t.Errorf("no %s in the scrape: %v", name, slices.Sorted(maps.Keys(families)))
			continue
		}
		if f.help != want.help || f.typ != want.typ {
			t.Errorf("%s is a %s with HELP %q, want a %s with %q", name, f.typ, f.help, want.typ, want.help)
		}
	}
}
