package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/creekstream/creek/metrics"
)

const docPath = "../../../docs/metrics.md"

func TestDocIsUpToDate(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := render(doc, metrics.Catalog())
	if err != nil {
		t.Fatalf("docs/metrics.md: %v", err)
	}
	if !bytes.Equal(doc, want) {
		t.Fatal("docs/metrics.md's metric tables differ from metrics.Catalog; run go generate ./metrics")
	}
}

func TestRender(t *testing.T) {
	// Real names, because the Prometheus column asks the backend, which knows
	// only the real catalog.
	catalog := []metrics.Description{
		{Name: "consumer.run.count", Type: metrics.TypeCounter, Unit: "things", Source: "pa", Meaning: "things done",
			Tags: []metrics.TagDescription{{Key: "status", Values: []string{"ok", "error"}}, {Key: "topic"}}},
		{Name: "consumer.poll.time", Type: metrics.TypeTimingTotal, Unit: "seconds", Source: "pb", Meaning: "time spent"},
	}
	doc := "intro\n<!-- catalog: pa pb -->\nstale\n<!-- /catalog -->\noutro\n"
	got, err := render([]byte(doc), catalog)
	if err != nil {
		t.Fatal(err)
	}
	want := "intro\n<!-- catalog: pa pb -->\n" +
		"| name | Prometheus | type | unit | tags | meaning |\n|---|---|---|---|---|---|\n" +
		"| `consumer.run.count` | `creek_consumer_run_total` | counter | things | `status` = `ok` / `error`, `topic` | things done |\n" +
		"| `consumer.poll.time` | `creek_consumer_poll_time_seconds_total` | timing (buffered total) | seconds | | time spent |\n" +
		"<!-- /catalog -->\noutro\n"
	if string(got) != want {
		t.Errorf("render =\n%s\nwant\n%s", got, want)
	}

	for _, tt := range []struct{ name, doc, wantErr string }{
		{"entry in no table", "<!-- catalog: pa -->\n<!-- /catalog -->\n", "no <!-- catalog:"},
		{"entry in two tables", "<!-- catalog: pa pb -->\n<!-- /catalog -->\n<!-- catalog: pb -->\n<!-- /catalog -->\n", "in 2 tables"},
		{"unterminated", "<!-- catalog: pa pb -->\n", "has no"},
		{"no source", "<!-- catalog: -->\n<!-- /catalog -->\n", "names no source"},
	} {
		if _, err := render([]byte(tt.doc), catalog); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: render = %v, want an error saying %q", tt.name, err, tt.wantErr)
		}
	}
}
