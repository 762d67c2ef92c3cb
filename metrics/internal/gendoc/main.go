// Command gendoc writes the metric tables of docs/metrics.md from metrics.Catalog,
// so that the documentation cannot say something the code does not.
//
// The tables sit between a line "<!-- catalog: SOURCE... -->", which names the
// packages whose metrics the table lists, and a line "<!-- /catalog -->"; the text
// around them is left as written. Run it with go generate ./metrics.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

func main() {
	doc := flag.String("doc", "docs/metrics.md", "the file whose tables to rewrite")
	flag.Parse()
	old, err := os.ReadFile(*doc)
	if err != nil {
		log.Fatal(err)
	}
	updated, err := render(old, metrics.Catalog())
	if err != nil {
		log.Fatalf("%s: %v", *doc, err)
	}
	if bytes.Equal(old, updated) {
		return
	}
	if err := os.WriteFile(*doc, updated, 0o644); err != nil {
		log.Fatal(err)
	}
}

const (
	beginMarker = "<!-- catalog:"
	endMarker   = "<!-- /catalog -->"
)

// render returns doc with every catalog table replaced by the catalog's entries
// for the sources its marker names. Every entry must land in exactly one table, so
// that a metric of a new package cannot go undocumented.
func render(doc []byte, catalog []metrics.Description) ([]byte, error) {
	var out bytes.Buffer
	placed := map[string]int{}
	lines := strings.SplitAfter(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out.WriteString(line)
		trimmed := strings.TrimSpace(line)
		if !strings.HasPrefix(trimmed, beginMarker) {
			continue
		}
		sources := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(trimmed, beginMarker), "-->"))
		if len(sources) == 0 {
			return nil, fmt.Errorf("line %d: %q names no source package", i+1, trimmed)
		}
		end := i + 1
		for end < len(lines) && strings.TrimSpace(lines[end]) != endMarker {
			if strings.HasPrefix(strings.TrimSpace(lines[end]), beginMarker) {
				break
			}
			end++
		}
		if end == len(lines) || strings.TrimSpace(lines[end]) != endMarker {
			return nil, fmt.Errorf("line %d: %q has no %q after it", i+1, trimmed, endMarker)
		}
		table, err := renderTable(catalog, sources, placed)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out.WriteString(table)
		out.WriteString(lines[end])
		i = end
	}
	for _, d := range catalog {
		switch placed[d.Name] {
		case 0:
			return nil, fmt.Errorf("no %s table for %s (source %s); add one, or its source to a marker", beginMarker+" ... -->", d.Name, d.Source)
		case 1:
		default:
			return nil, fmt.Errorf("%s is in %d tables; name its source %s in one marker only", d.Name, placed[d.Name], d.Source)
		}
	}
	return out.Bytes(), nil
}

func renderTable(catalog []metrics.Description, sources []string, placed map[string]int) (string, error) {
	var b strings.Builder
	b.WriteString("| name | Prometheus | type | unit | tags | meaning |\n|---|---|---|---|---|---|\n")
	for _, d := range catalog {
		if !slices.Contains(sources, d.Source) {
			continue
		}
		placed[d.Name]++
		if strings.ContainsAny(d.Meaning, "|\n") {
			return "", fmt.Errorf("the meaning of %s has a | or a line break, which would break the table", d.Name)
		}
		prom, err := prometheusName(d)
		if err != nil {
			return "", err
		}
		b.WriteString("|")
		for _, cell := range []string{"`" + d.Name + "`", "`" + prom + "`", d.Type.String(), d.Unit, tags(d.Tags), d.Meaning} {
			if cell != "" {
				b.WriteString(" " + cell)
			}
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

func tags(ts []metrics.TagDescription) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = "`" + t.Key + "`"
		if len(t.Values) > 0 {
			parts[i] += " = `" + strings.Join(t.Values, "` / `") + "`"
		}
	}
	return strings.Join(parts, ", ")
}

// prometheusName returns the name under which the Prometheus backend, with the
// default prefix, exposes d. It records d and asks the registry rather than
// repeating the backend's naming rule, so that the table shows what a scrape shows.
func prometheusName(d metrics.Description) (string, error) {
	reg := prometheus.NewRegistry()
	p, err := metrics.NewPrometheus(metrics.PrometheusConfig{Registerer: reg})
	if err != nil {
		return "", err
	}
	if d.Name == "metrics.prometheus.dropped_total" {
		// The backend's own counter is registered already; recording it under
		// its name adds to the same family.
		p.Increment(d.Name, 1, metrics.Tag{Key: "metric", Value: "m"}, metrics.Tag{Key: "reason", Value: "r"})
	} else {
		switch d.Type {
		case metrics.TypeCounter:
			p.Increment(d.Name, 1)
		case metrics.TypeGauge:
			p.Gauge(d.Name, 1)
		default:
			p.Timing(d.Name, time.Second)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		return "", err
	}
	var names []string
	for _, f := range families {
		if len(f.GetMetric()) > 0 {
			names = append(names, f.GetName())
		}
	}
	if len(names) != 1 {
		return "", fmt.Errorf("recording %s exposed the Prometheus families %v, want one", d.Name, names)
	}
	return names[0], nil
}
