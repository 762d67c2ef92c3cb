package processor

import (
	"errors"
	"time"

	"github.com/creekstream/creek/internal/commitstate"
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

// newState returns the commit state of p, starting its interval at now.
func (p CommitPolicy) newState(now time.Time) (*commitstate.State[Partition], error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return commitstate.New[Partition](p.MinInterval, p.MinMessages, now), nil
}
