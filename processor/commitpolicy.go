package processor

import (
	"errors"
	"time"
)

// CommitPolicy says how often staged offsets are committed: when MinInterval has
// passed since the last commit, or when MinMessages messages were processed since,
// whichever comes first. At least one must be set.
type CommitPolicy struct {
	MinInterval time.Duration
	MinMessages int64
}

// ImmediateCommit commits after every message.
func ImmediateCommit() CommitPolicy { return CommitPolicy{MinMessages: 1} }

// DefaultCommitPolicy commits at most once per second.
func DefaultCommitPolicy() CommitPolicy { return CommitPolicy{MinInterval: time.Second} }

// ErrInvalidCommitPolicy is returned for a CommitPolicy that can never commit.
var ErrInvalidCommitPolicy = errors.New("processor: commit policy needs MinInterval > 0 or MinMessages > 0")

// Validate reports a policy that sets neither limit, or a negative one.
func (p CommitPolicy) Validate() error {
	if p.MinInterval < 0 || p.MinMessages < 0 || (p.MinInterval == 0 && p.MinMessages == 0) {
		return ErrInvalidCommitPolicy
	}
	return nil
}

// CommitPolicyState applies a CommitPolicy to a stream of offsets. It is not safe for
// concurrent use.
type CommitPolicyState struct {
	policy   CommitPolicy
	lastTime time.Time
	last     map[Partition]int64
}

// NewState returns the state of p, starting its interval at now.
func (p CommitPolicy) NewState(now time.Time) (*CommitPolicyState, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &CommitPolicyState{policy: p, lastTime: now, last: make(map[Partition]int64)}, nil
}

// ShouldCommit reports whether offsets staged up to c should be committed at now. A
// partition never committed before counts its first offset as one message.
func (s *CommitPolicyState) ShouldCommit(now time.Time, c map[Partition]int64) bool {
	if s.policy.MinMessages > 0 {
		var n int64
		for p, next := range c {
			prev, ok := s.last[p]
			if !ok {
				prev = next - 1
				s.last[p] = prev
			}
			n += next - prev
		}
		if n >= s.policy.MinMessages {
			return true
		}
	}
	return s.policy.MinInterval > 0 && now.Sub(s.lastTime) >= s.policy.MinInterval
}

// DidCommit records that c was committed at now.
func (s *CommitPolicyState) DidCommit(now time.Time, c map[Partition]int64) {
	s.lastTime = now
	for p, o := range c {
		s.last[p] = o
	}
}

// Forget drops what is known of partitions, as after a revocation.
func (s *CommitPolicyState) Forget(ps []Partition) {
	for _, p := range ps {
		delete(s.last, p)
	}
}
