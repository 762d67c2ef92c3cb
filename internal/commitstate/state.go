// Package commitstate applies a commit policy to a stream of offsets: the processor
// uses it for the offsets it commits, the filter for the dropped offsets it forwards.
package commitstate

import "time"

// State says when offsets staged per partition K are due for a commit: once
// minMessages messages were processed since the last commit, or minInterval has
// passed, whichever comes first (a zero limit is off). It is not safe for concurrent
// use.
type State[K comparable] struct {
	minInterval time.Duration
	minMessages int64
	lastTime    time.Time
	last        map[K]int64
}

// New returns a State whose interval starts at now.
func New[K comparable](minInterval time.Duration, minMessages int64, now time.Time) *State[K] {
	return &State[K]{minInterval: minInterval, minMessages: minMessages, lastTime: now, last: make(map[K]int64)}
}

// ShouldCommit reports whether offsets staged up to c should be committed at now. A
// partition never committed before counts its first offset as one message.
func (s *State[K]) ShouldCommit(now time.Time, c map[K]int64) bool {
	if s.minMessages > 0 {
		var n int64
		for p, next := range c {
			prev, ok := s.last[p]
			if !ok {
				prev = next - 1
				s.last[p] = prev
			}
			n += next - prev
		}
		if n >= s.minMessages {
			return true
		}
	}
	return s.minInterval > 0 && now.Sub(s.lastTime) >= s.minInterval
}

// DidCommit records that c was committed at now.
func (s *State[K]) DidCommit(now time.Time, c map[K]int64) {
	s.lastTime = now
	for p, o := range c {
		s.last[p] = o
	}
}

// Forget drops what is known of partitions, as after a revocation.
func (s *State[K]) Forget(ps []K) {
	for _, p := range ps {
		delete(s.last, p)
	}
}
