package processor

import (
	"errors"
	"testing"
	"time"
)

func TestCommitPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  CommitPolicy
		wantErr bool
	}{
		{"immediate", ImmediateCommit(), false},
		{"default", DefaultCommitPolicy(), false},
		{"both", CommitPolicy{MinInterval: 2 * time.Second, MinMessages: 100}, false},
		{"neither", CommitPolicy{}, true},
		{"negative interval", CommitPolicy{MinInterval: -time.Second, MinMessages: 1}, true},
		{"negative messages", CommitPolicy{MinInterval: time.Second, MinMessages: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidCommitPolicy) {
				t.Fatalf("Validate() = %v, want ErrInvalidCommitPolicy", err)
			}
			if _, err := tt.policy.newState(time.Unix(0, 0)); (err != nil) != tt.wantErr {
				t.Fatalf("newState() error = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

// commitStep is one row of a truth table: at elapsed time since the start, with
// these offsets staged, should the state say commit? If it does, the offsets are
// recorded as committed at that time.
type commitStep struct {
	at     time.Duration
	staged map[Partition]int64
	want   bool
}

func TestCommitPolicyState(t *testing.T) {
	p0 := Partition{Topic: "t", Index: 0}
	p1 := Partition{Topic: "t", Index: 1}
	tests := []struct {
		name   string
		policy CommitPolicy
		steps  []commitStep
	}{
		{
			name:   "immediate commits every message",
			policy: ImmediateCommit(),
			steps: []commitStep{
				{0, map[Partition]int64{p0: 1}, true},
				{0, map[Partition]int64{p0: 1}, false}, // nothing new
				{0, map[Partition]int64{p0: 2}, true},
				{0, map[Partition]int64{}, false},
			},
		},
		{
			name:   "once per second",
			policy: DefaultCommitPolicy(),
			steps: []commitStep{
				{0, map[Partition]int64{p0: 50}, false},
				{999 * time.Millisecond, map[Partition]int64{p0: 500}, false},
				{time.Second, map[Partition]int64{p0: 501}, true},
				{1999 * time.Millisecond, map[Partition]int64{p0: 900}, false},
				{2 * time.Second, map[Partition]int64{}, true}, // a Poll: time alone flushes
			},
		},
		{
			name:   "2 s or 100 messages",
			policy: CommitPolicy{MinInterval: 2 * time.Second, MinMessages: 100},
			steps: []commitStep{
				// First sight of p0 at 10 counts as one message, not eleven.
				{0, map[Partition]int64{p0: 10}, false},
				{0, map[Partition]int64{p0: 108}, false},                   // 99 since p0's first offset
				{time.Second, map[Partition]int64{p0: 109}, true},          // 100
				{time.Second, map[Partition]int64{p0: 159, p1: 49}, false}, // 50 + 1 (p1 first seen)
				{time.Second, map[Partition]int64{p0: 159, p1: 98}, true},  // 50 + 50
				{2900 * time.Millisecond, map[Partition]int64{p0: 160}, false},
				{3 * time.Second, map[Partition]int64{p0: 160}, true}, // 2 s since the last commit
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1_000, 0)
			s, err := tt.policy.newState(start)
			if err != nil {
				t.Fatalf("newState: %v", err)
			}
			for i, st := range tt.steps {
				now := start.Add(st.at)
				if got := s.ShouldCommit(now, st.staged); got != st.want {
					t.Fatalf("step %d (at %v, staged %v): ShouldCommit = %v, want %v", i, st.at, st.staged, got, st.want)
				}
				if st.want {
					s.DidCommit(now, st.staged)
				}
			}
		})
	}
}

func TestCommitPolicyStateForget(t *testing.T) {
	p0 := Partition{Topic: "t", Index: 0}
	s, err := CommitPolicy{MinMessages: 10}.newState(time.Unix(0, 0))
	if err != nil {
		t.Fatalf("newState: %v", err)
	}
	s.DidCommit(time.Unix(0, 0), map[Partition]int64{p0: 100})
	if s.ShouldCommit(time.Unix(0, 0), map[Partition]int64{p0: 105}) {
		t.Fatal("5 messages past the last commit: ShouldCommit = true, want false")
	}
	// After a revocation p0 is new again: its offset counts as one message.
	s.Forget([]Partition{p0})
	if s.ShouldCommit(time.Unix(0, 0), map[Partition]int64{p0: 500}) {
		t.Fatal("a forgotten partition counted its whole offset, want one message")
	}
}
