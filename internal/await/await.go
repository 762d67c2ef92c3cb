// Package await lets tests wait for a condition without sleeping: code under test
// calls Notify whenever something observable changes, and Until re-checks the
// condition after each change, failing the test with what it waited for once the
// timeout passes.
package await

import (
	"sync"
	"testing"
	"time"
)

// Notifier wakes every waiter when something observable changed. The zero value is
// ready to use.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// Notify wakes everyone waiting on a channel from Changed.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
	}
	n.ch = make(chan struct{})
}

// Changed returns a channel that is closed at the next Notify.
func (n *Notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Until returns once cond holds, re-checking it after every change n reports, and
// fails t naming what it waited for if cond does not hold within timeout.
func Until(t testing.TB, n *Notifier, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := n.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}
