package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestRunChecksEverySpan(t *testing.T) {
	var out bytes.Buffer
	o := options{traces: 100, rate: 5000, invalid: 4, partitions: 2,
		rootTimeout: time.Second, timeout: 3 * time.Second, deadline: 60 * time.Second}
	if err := run(context.Background(), o, &out, zap.NewNop()); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "check: OK: every one of the") || !strings.Contains(out.String(), "DLQ 4 of 4 invalid") {
		t.Fatalf("output lacks the passing check:\n%s", out.String())
	}
}

// The check is strict: one span out in a wrong segment, even beside its right one,
// fails it and is listed.
func TestReportFailsLoudly(t *testing.T) {
	gen := generate(3, 2, 2)
	var root, child string
	for id, want := range gen.expected {
		if id != want {
			child, root = id, want
			break
		}
	}
	cases := []struct {
		name string
		edit func(r *reader)
		want []string
	}{
		{"all delivered", func(*reader) {}, []string{"check: OK: every one of the"}},
		{"a duplicate is allowed", func(r *reader) {
			r.seen[child] = append(r.seen[child], emission{segment: root})
		}, []string{"check: OK", "duplicates 1"}},
		{"in a wrong segment", func(r *reader) {
			r.seen[child] = []emission{{segment: child}}
		}, []string{"check: FAILED", "1 in a wrong segment", "span " + child, "belongs to segment " + root}},
		{"also in a wrong segment", func(r *reader) {
			r.seen[child] = append(r.seen[child], emission{segment: child})
		}, []string{"check: FAILED", "1 in a wrong segment"}},
		{"missing", func(r *reader) { delete(r.seen, child) }, []string{"check: FAILED", "1 spans missing", "span " + child, "of segment " + root + " never came out"}},
		{"not dead-lettered", func(r *reader) { clear(r.dead) }, []string{"check: FAILED", "2 invalid spans not in the DLQ"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &reader{seen: make(map[string][]emission), dead: make(map[string]bool)}
			for id, want := range gen.expected {
				r.seen[id] = []emission{{segment: want}}
			}
			for v := range gen.invalid {
				r.dead[v] = true
			}
			for _, rec := range gen.records {
				rec.Timestamp = time.Now()
			}
			tc.edit(r)
			var out bytes.Buffer
			err := report(&out, gen, r, time.Second)
			if failed := strings.Contains(tc.want[0], "FAILED"); failed != (err != nil) {
				t.Fatalf("report error %v, want failure %v\n%s", err, failed, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
