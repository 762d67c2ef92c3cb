package stuckdetector

import (
	"context"
	"testing"
	"time"
)

func TestWatchReportsSlowOperation(t *testing.T) {
	logger, logs, written := observed()
	done := Watch(context.Background(), "flusher start-up", time.Millisecond, logger)
	waitLog(t, written, "operation has not finished in time")
	done()
	done()
	finished := logs.FilterMessage("slow operation finished").All()
	if len(finished) != 1 || finished[0].ContextMap()["operation"] != "flusher start-up" {
		t.Fatalf("got %d finish logs %v, want one naming the operation", len(finished), finished)
	}
	if took, _ := finished[0].ContextMap()["took"].(time.Duration); took < time.Millisecond {
		t.Errorf("finish log says it took %v, less than the timeout", took)
	}
}

func TestWatchStaysQuiet(t *testing.T) {
	tests := []struct {
		name string
		end  func(cancel context.CancelFunc, done func())
	}{
		{"done before the timeout", func(_ context.CancelFunc, done func()) { done() }},
		{"context cancelled", func(cancel context.CancelFunc, done func()) { cancel(); done() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs, _ := observed()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := Watch(ctx, "op", time.Hour, logger)
			tt.end(cancel, done)
			if n := logs.Len(); n != 0 {
				t.Errorf("%d logs, want none: %v", n, logs.All())
			}
		})
	}
}
