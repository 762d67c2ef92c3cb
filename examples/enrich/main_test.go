package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sarama's metrics library starts one process-wide ticker that never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

func TestRunInProcess(t *testing.T) {
	var out bytes.Buffer
	res, err := run("", 8, 20*time.Second, &out, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// Events go to users u1, u2, u3, u9 in turn; u9 has no profile.
	if res.enriched != 6 || res.dropped != 2 {
		t.Fatalf("enriched %d, dropped %d; want 6 and 2", res.enriched, res.dropped)
	}
	var committed int64
	for _, o := range res.committed {
		committed += o
	}
	if committed != 8 {
		t.Fatalf("committed offsets %v add up to %d, want all 8 events", res.committed, committed)
	}
	for _, want := range []string{"Ada (pro plan) login", "Grace (free plan) search", "Edsger (team plan) view"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "u9") {
		t.Errorf("output has an event of u9, which the table does not know:\n%s", out.String())
	}
}
