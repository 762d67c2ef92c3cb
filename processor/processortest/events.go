package processortest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/await"
)

// Events records, in order, what happened across the doubles that share it, such as
// "assigned [t/0]", "commit t/0:3" or "strategy 1 close". The zero value is ready to
// use and safe for concurrent use.
type Events struct {
	n    await.Notifier
	mu   sync.Mutex
	list []string
}

// NewEvents returns an empty Events.
func NewEvents() *Events { return &Events{} }

// Add records an event, formatted as by fmt.Sprintf, and wakes WaitUntil.
func (e *Events) Add(format string, args ...any) {
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
	e.mu.Unlock()
	e.Notify()
}

// Notify wakes every WaitUntil on this Events to re-check its condition. The doubles
// call it on every change; a test's own double may too, else the wait notices the
// change at its next periodic check.
func (e *Events) Notify() { e.n.Notify() }

// All returns the events so far, oldest first.
func (e *Events) All() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

// Has reports whether s happened.
func (e *Events) Has(s string) bool { return slices.Contains(e.All(), s) }

// Index returns where s first happened, failing the test if it never did.
func (e *Events) Index(t testing.TB, s string) int {
	t.Helper()
	all := e.All()
	i := slices.Index(all, s)
	if i < 0 {
		t.Fatalf("event %q never happened; events: %v", s, all)
	}
	return i
}

// WaitTimeout is how long the waits of this package wait before they fail the test.
const WaitTimeout = 10 * time.Second

// recheckEvery bounds how late a wait notices a change nobody notified.
const recheckEvery = 10 * time.Millisecond

// WaitUntil returns once cond holds, re-checking it after every Notify and every few
// milliseconds, and fails the test naming what it waited for after WaitTimeout.
func (e *Events) WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(recheckEvery)
	defer tick.Stop()
	for {
		changed := e.n.Changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
	}
}
