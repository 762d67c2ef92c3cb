package strategies

import (
	"context"
	"time"

	"github.com/creekstream/creek/processor"
)

// WaitForever, given to NewSetJoinTimeout, makes the steps below wait without a time
// limit when joined.
const WaitForever time.Duration = -1

// SetJoinTimeout passes everything through to the next step and replaces the join
// timeout that step sees. It lets one part of a chain, such as a producer that must
// not lose deliveries, wait longer or shorter than the processor's join timeout.
type SetJoinTimeout[T any] struct {
	next    processor.Strategy[T]
	timeout time.Duration
}

// NewSetJoinTimeout returns a SetJoinTimeout in front of next. A timeout of 0 makes
// next stop waiting at once, a negative one (WaitForever) lets it wait for ever, and a
// positive one gives it that long, however much time the caller of Join allowed.
func NewSetJoinTimeout[T any](timeout time.Duration, next processor.Strategy[T]) *SetJoinTimeout[T] {
	return &SetJoinTimeout[T]{next: next, timeout: timeout}
}

// Submit passes msg to the next step.
func (s *SetJoinTimeout[T]) Submit(msg processor.Message[T]) error { return s.next.Submit(msg) }

// Poll polls the next step.
func (s *SetJoinTimeout[T]) Poll() error { return s.next.Poll() }

// Close closes the next step.
func (s *SetJoinTimeout[T]) Close() { s.next.Close() }

// Join joins the next step with the configured timeout in place of ctx's deadline and
// cancellation; ctx's values are kept.
func (s *SetJoinTimeout[T]) Join(ctx context.Context) error {
	// WithoutCancel detaches from the caller's deadline but keeps its values, so
	// loggers or traces carried in ctx still reach the steps below.
	detached := context.WithoutCancel(ctx)
	switch {
	case s.timeout < 0:
		return s.next.Join(detached)
	case s.timeout == 0:
		done, cancel := context.WithCancel(detached)
		cancel()
		return s.next.Join(done)
	default:
		limited, cancel := context.WithTimeout(detached, s.timeout)
		defer cancel()
		return s.next.Join(limited)
	}
}

// Terminate terminates the next step.
func (s *SetJoinTimeout[T]) Terminate() { s.next.Terminate() }
