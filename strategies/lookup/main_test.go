package lookup_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a View, emitter or client goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sarama's metrics library starts one process-wide ticker that never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
