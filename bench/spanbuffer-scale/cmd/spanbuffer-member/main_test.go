package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

func TestParseOptions(t *testing.T) {
	req := []string{"-brokers", "k1:9092, k2:9092", "-cluster", "r1:7000,r2:7001,r3:7002", "-group", "g", "-in", "spans", "-out-topic", "segs"}
	o, err := parseOptions(append(req, "-root-timeout", "1s", "-workers", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.brokers) != 2 || o.brokers[1] != "k2:9092" || len(o.cluster) != 3 || o.group != "g" || o.in != "spans" || o.out != "segs" {
		t.Errorf("parsed %+v", o)
	}
	if o.rootTimeout != time.Second || o.workers != 4 || o.batchSize != 1000 || o.timeout != 5*time.Second {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range [][]string{
		nil,
		req[2:], // no brokers
		append(append([]string{}, req...), "-batch-size", "0"),
		append(append([]string{}, req...), "-root-timeout", "0s"),
		append(append([]string{}, req...), "-workers", "-1"),
		append(append([]string{}, req...), "extra"),
		append(append([]string{}, req...), "-unknown"),
	} {
		if _, err := parseOptions(bad); err == nil {
			t.Errorf("parseOptions(%q) took it", bad)
		}
	}
}

// TestReporter checks the report lines: rebalances as they come, progress only
// when a count changed, and a last line with every count on exit.
func TestReporter(t *testing.T) {
	var buf bytes.Buffer
	r := newReporter(&buf)
	_ = r.hook(zapcore.Entry{Message: "processor: partitions assigned"})
	_ = r.hook(zapcore.Entry{Message: "something else"})
	r.Increment("spans.buffer.process_spans.count", 5)
	r.Increment("spans.buffer.flusher.segment_spans", 3)
	r.Increment("spans.buffer.flusher.produced_segments", 1)
	if err := r.flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.flush(); err != nil { // nothing changed: nothing written
		t.Fatal(err)
	}
	_ = r.hook(zapcore.Entry{Message: "processor: partitions revoked"})
	r.Increment("spans.buffer.flusher.segment_spans", 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.run(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := "rebalance assigned\nprogress 3 5\nrebalance revoked\nprogress 5 5\n"
	if got := buf.String(); got != want {
		t.Errorf("wrote\n%s\nwant\n%s", got, want)
	}
	if strings.Count(buf.String(), "progress") != 2 {
		t.Error("progress lines repeated")
	}
}
