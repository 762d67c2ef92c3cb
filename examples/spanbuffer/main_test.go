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
	if !strings.Contains(out.String(), "check: OK") || !strings.Contains(out.String(), "DLQ 4 of 4 invalid") {
		t.Fatalf("output lacks the passing check:\n%s", out.String())
	}
}
