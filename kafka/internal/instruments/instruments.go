// Package instruments holds what a Kafka producer of either backend logs and
// records through: its own configuration, completed by the processor's.
package instruments

import (
	"sync"
	"sync/atomic"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"go.uber.org/zap"
)

// Set is a producer's instruments. Load is safe from any goroutine, at any time;
// Instrument may be called while the producer is in use.
type Set struct {
	// mu guards given: what the producer's config set, completed by Instrument.
	mu    sync.Mutex
	given processor.Instruments
	// cur is given with the defaults filled in.
	cur atomic.Pointer[processor.Instruments]
}

// New returns the instruments of a producer configured with logger and m (nil for
// unset).
func New(logger *zap.Logger, m metrics.Metrics) *Set {
	s := &Set{given: processor.Instruments{Logger: logger, Metrics: m}}
	s.store()
	return s
}

// Instrument fills what the producer's config left unset with inst; when several
// processors share the producer, the first one's are used.
func (s *Set) Instrument(inst processor.Instruments) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.given = s.given.Or(inst)
	s.store()
}

// Load returns the current instruments, with nothing unset: what no one set
// discards.
func (s *Set) Load() *processor.Instruments { return s.cur.Load() }

func (s *Set) store() {
	inst := s.given.Or(processor.Instruments{Logger: zap.NewNop(), Metrics: metrics.Noop{}})
	s.cur.Store(&inst)
}
