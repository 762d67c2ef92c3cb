package metricstest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
)

func TestRecorderAccessors(t *testing.T) {
	var r Recorder
	r.Increment("c", 2, metrics.Tag{Key: "a", Value: "1"}, metrics.Tag{Key: "b", Value: "2"})
	r.Increment("c", 3, metrics.Tag{Key: "b", Value: "2"}, metrics.Tag{Key: "a", Value: "1"})
	r.Increment("c", 100)
	r.Gauge("g", 1)
	r.Gauge("g", 2)
	r.Timing("t", time.Second)
	r.Timing("t", time.Millisecond)

	if got := r.Counter("c", metrics.Tag{Key: "a", Value: "1"}, metrics.Tag{Key: "b", Value: "2"}); got != 5 {
		t.Errorf("Counter(c, a=1 b=2) = %d, want 5", got)
	}
	if got := r.Counter("c"); got != 100 {
		t.Errorf("Counter(c) = %d, want 100", got)
	}
	if got, ok := r.GaugeValue("g"); !ok || got != 2 {
		t.Errorf("GaugeValue(g) = %v, %v, want 2, true", got, ok)
	}
	if _, ok := r.GaugeValue("never"); ok {
		t.Error("GaugeValue of a gauge never set says it was set")
	}
	if got := r.Timings("t"); !slices.Equal(got, []time.Duration{time.Second, time.Millisecond}) {
		t.Errorf("Timings(t) = %v, want [1s 1ms]", got)
	}
}

func TestRecorderWaitCounterWakesOnWrite(t *testing.T) {
	r := NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- r.WaitCounter(ctx, "c", 3) }()
	for range 3 {
		r.Increment("c", 1)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
}

func TestRecorderWaitCounterSaysWhatItSaw(t *testing.T) {
	r := NewRecorder()
	r.Increment("c", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := r.WaitCounter(ctx, "c", 2)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "reached 1, waited for 2") {
		t.Errorf("WaitCounter = %v, want context.Canceled saying it reached 1 of 2", err)
	}
}
