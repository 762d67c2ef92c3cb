package strategies

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

type joinTimeoutKey struct{}

func TestSetJoinTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		// wantLive says whether the context must still be live while next joins.
		wantLive bool
		// check inspects the context the next step was joined with.
		check func(t *testing.T, ctx context.Context)
	}{
		{
			name:    "zero does not wait",
			timeout: 0,
			check: func(t *testing.T, ctx context.Context) {
				if ctx.Err() == nil {
					t.Fatal("next step joined with a live context, want one already done")
				}
			},
		},
		{
			name:     "WaitForever has no deadline",
			timeout:  WaitForever,
			wantLive: true,
			check: func(t *testing.T, ctx context.Context) {
				if _, ok := ctx.Deadline(); ok {
					t.Fatal("next step joined with a deadline, want none")
				}
				if ctx.Err() != nil || ctx.Done() != nil {
					t.Fatalf("next step joined with a cancellable context (err %v), want one that never ends", ctx.Err())
				}
			},
		},
		{
			name:     "positive gives a fresh timeout",
			timeout:  time.Hour,
			wantLive: true,
			check: func(t *testing.T, ctx context.Context) {
				d, ok := ctx.Deadline()
				if !ok {
					t.Fatal("next step joined without a deadline, want one an hour away")
				}
				if left := time.Until(d); left < 59*time.Minute || left > time.Hour {
					t.Fatalf("deadline %v away, want about an hour", left)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &joinProbe[int]{}
			s := NewSetJoinTimeout[int](tt.timeout, next)
			p := processor.Partition{Topic: "t"}
			if err := s.Submit(processor.NewBrokerMessage(7, p, 0, time.Time{})); err != nil {
				t.Fatalf("Submit = %v", err)
			}
			if err := s.Poll(); err != nil {
				t.Fatalf("Poll = %v", err)
			}
			if got := len(next.messages()); got != 1 || next.polls != 1 {
				t.Fatalf("next got %d messages and %d polls, want 1 and 1", got, next.polls)
			}

			// The caller's context is already done and carries a value: the override
			// must replace the former and keep the latter.
			parent, cancel := context.WithCancel(context.WithValue(context.Background(), joinTimeoutKey{}, "v"))
			cancel()
			if err := s.Join(parent); err != nil {
				t.Fatalf("Join = %v", err)
			}
			if !next.joined {
				t.Fatal("next step was not joined")
			}
			if got := next.joinCtx.Value(joinTimeoutKey{}); got != "v" {
				t.Fatalf("join context value = %v, want the caller's %q", got, "v")
			}
			if next.liveAtJoin != tt.wantLive {
				t.Fatalf("context live while joining = %v, want %v", next.liveAtJoin, tt.wantLive)
			}
			tt.check(t, next.joinCtx)
		})
	}
}

// joinProbe is a recorder that also notes whether its join context was live
// during Join, before SetJoinTimeout releases it.
type joinProbe[T any] struct {
	recorder[T]
	liveAtJoin bool
}

func (p *joinProbe[T]) Join(ctx context.Context) error {
	p.liveAtJoin = ctx.Err() == nil
	return p.recorder.Join(ctx)
}

func TestSetJoinTimeoutPassesCloseAndTerminate(t *testing.T) {
	next := &recorder[int]{}
	s := NewSetJoinTimeout[int](time.Second, next)
	s.Close()
	s.Terminate()
	if !next.closed || !next.terminated {
		t.Fatalf("next closed=%v terminated=%v, want both true", next.closed, next.terminated)
	}
}
