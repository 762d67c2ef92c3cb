package processor

import "sync"

// This file lends the external tests (package processor_test) the few internals
// they observe; it is compiled only into the tests.

// The loop's phase names, as the watchdog and the consumer.stuck tag report them.
const (
	PhasePoll         = phasePoll
	PhaseStrategyPoll = phaseStrategyPoll
	PhaseSubmit       = phaseSubmit
	PhaseCommit       = phaseCommit
	PhaseRebalance    = phaseRebalance
	PhaseJoin         = phaseJoin
)

// SetExit replaces what the processor calls to exit after the stuck hard limit.
func SetExit[T any](p *StreamProcessor[T], exit func(code int)) { p.cfg.exit = exit }

// DLQBuffered returns how many raw messages the DLQ holds for later dead-lettering.
func DLQBuffered[T any](p *StreamProcessor[T]) int { return p.dlq.buffered() }

// PhaseRecorder sits between the loop and its heartbeat and keeps the loop's
// current phase for a test to read.
type PhaseRecorder struct {
	next   heartbeat
	notify func()

	mu    sync.Mutex
	phase string
}

// RecordPhases puts a PhaseRecorder between p's loop and its heartbeat; notify, if
// not nil, runs at every change of phase. Call it before Run.
func RecordPhases[T any](p *StreamProcessor[T], notify func()) *PhaseRecorder {
	r := &PhaseRecorder{next: p.hb, notify: notify}
	p.hb = r
	return r
}

func (r *PhaseRecorder) Tick() { r.next.Tick() }

func (r *PhaseRecorder) TickPhase(phase string) {
	r.next.TickPhase(phase)
	r.record(phase)
}

func (r *PhaseRecorder) SetPhase(phase string) {
	r.next.SetPhase(phase)
	r.record(phase)
}

func (r *PhaseRecorder) record(phase string) {
	r.mu.Lock()
	changed := r.phase != phase
	r.phase = phase
	r.mu.Unlock()
	if changed && r.notify != nil {
		r.notify()
	}
}

// Current returns the phase the loop was last in.
func (r *PhaseRecorder) Current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// Internal constants the tests reason with.
const (
	RetryInterval = retryInterval
	ClockStride   = clockStride
)

// ConfigOf returns p's configuration with its defaults filled in.
func ConfigOf[T any](p *StreamProcessor[T]) Config[T] { return p.cfg }
