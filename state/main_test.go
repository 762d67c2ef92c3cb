package state_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if a restore, store or client goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sarama's metrics library starts one process-wide ticker that never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		// A closed LevelDB's pool drainer lingers for up to a second after Close by
		// design. A store left open shows otherwise: its directory stays locked, and
		// the tests that reopen one would fail.
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"),
	)
}
