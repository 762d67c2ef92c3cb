package strategies

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// blocker is a user function that blocks on its context for payloads listed in
// block and returns the others at once. It records how each blocked call ended.
type blocker struct {
	block map[int]bool
	// release lets a blocked call finish normally when closed.
	release chan struct{}

	mu      sync.Mutex
	started map[int]bool
	ended   map[int]error
	changed chan struct{}
}

func newBlocker(block ...int) *blocker {
	b := &blocker{block: map[int]bool{}, release: make(chan struct{}), started: map[int]bool{}, ended: map[int]error{}, changed: make(chan struct{}, 64)}
	for _, v := range block {
		b.block[v] = true
	}
	return b
}

func (b *blocker) fn(ctx context.Context, m processor.Message[int]) (int, error) {
	if !b.block[m.Payload] {
		return m.Payload, nil
	}
	b.note(func() { b.started[m.Payload] = true })
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-b.release:
	}
	b.note(func() { b.ended[m.Payload] = err })
	return m.Payload, err
}

func (b *blocker) note(f func()) {
	b.mu.Lock()
	f()
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// await waits until cond holds over the blocker's records.
func (b *blocker) await(t *testing.T, what string, cond func(started map[int]bool, ended map[int]error) bool) {
	t.Helper()
	deadline := time.After(processortest.WaitTimeout)
	for {
		b.mu.Lock()
		ok := cond(b.started, b.ended)
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-b.changed:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", processortest.WaitTimeout, what)
		}
	}
}

func (b *blocker) endedWith(v int) (error, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	err, ok := b.ended[v]
	return err, ok
}

// TestUserFunctionContextCancelled shows a user function blocked on its context
// returning when the processor shuts down, when its partition is revoked (eagerly or
// alone, cooperatively), once the join's deadline has passed; and that what it was
// working on is not committed, so it is redelivered.
func TestUserFunctionContextCancelled(t *testing.T) {
	p0 := processor.Partition{Topic: "t", Index: 0}
	p1 := processor.Partition{Topic: "t", Index: 1}
	const joinTimeout = 50 * time.Millisecond
	cases := []struct {
		name string
		// end makes the processor give up on p0's blocked message.
		end func(t *testing.T, h *processortest.Harness[int])
	}{
		{"shutdown", func(t *testing.T, h *processortest.Harness[int]) {
			if err := h.Stop(); err != nil {
				t.Fatalf("Run = %v, want nil after a shutdown", err)
			}
		}},
		{"eager revocation", func(t *testing.T, h *processortest.Harness[int]) {
			h.Await(h.Consumer.Revoke(p0, p1), "the revocation")
		}},
		{"cooperative revocation", func(t *testing.T, h *processortest.Harness[int]) {
			h.Await(h.Consumer.Revoke(p0), "the revocation")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlocker(1, 100)
			factory := processor.FactoryFunc[int](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[int], error) {
				return NewRunTaskConcurrently(b.fn, 4, 8, NewCommitOffsets[int](commit))
			})
			h := processortest.NewHarness(t, nil, factory, processor.Config[int]{JoinTimeout: joinTimeout})
			h.Consumer.Produce(p0, 0, 1, 2)
			h.Consumer.Produce(p1, 100)
			h.Consumer.Assign(p0, p1)
			h.Start()
			b.await(t, "both blocked calls to start", func(s map[int]bool, _ map[int]error) bool { return s[1] && s[100] })

			start := time.Now()
			tc.end(t, h)
			b.await(t, "p0's blocked call to return", func(_ map[int]bool, e map[int]error) bool { _, ok := e[1]; return ok })
			if err, _ := b.endedWith(1); !errors.Is(err, context.Canceled) {
				t.Fatalf("p0's call ended with %v, want context.Canceled", err)
			}
			if waited := time.Since(start); waited < joinTimeout {
				t.Errorf("p0's call was cancelled %v after the processor began to give it up, before the join timeout of %v", waited, joinTimeout)
			}
			if got := h.Consumer.Committed(p0); got > 1 {
				t.Errorf("p0 committed up to %d, past the cancelled message at offset 1", got)
			}
			if tc.name != "cooperative revocation" {
				return
			}
			// p1 stays assigned: its call keeps its context and its result is
			// committed once it finishes.
			if _, ended := b.endedWith(100); ended {
				t.Fatal("p1's call ended when only p0 was revoked")
			}
			close(b.release)
			h.WaitUntil("p1's message committed", func() bool { return h.Consumer.Committed(p1) == 1 })
			if err, _ := b.endedWith(100); err != nil {
				t.Errorf("p1's call ended with %v, want nil", err)
			}
		})
	}
}

// TestUserFunctionFinishingInTimeIsCommitted shows that a revocation does not cancel
// work that finishes within the join timeout: its result is committed.
func TestUserFunctionFinishingInTimeIsCommitted(t *testing.T) {
	p0 := processor.Partition{Topic: "t", Index: 0}
	// The last message blocks too, so the revocation cannot come before it is read.
	b := newBlocker(1, 2)
	factory := processor.FactoryFunc[int](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[int], error) {
		return NewRunTaskConcurrently(b.fn, 4, 8, NewCommitOffsets[int](commit))
	})
	h := processortest.NewHarness(t, nil, factory, processor.Config[int]{JoinTimeout: processortest.WaitTimeout})
	h.Consumer.Produce(p0, 0, 1, 2)
	h.Consumer.Assign(p0)
	h.Start()
	b.await(t, "the blocked calls to start", func(s map[int]bool, _ map[int]error) bool { return s[1] && s[2] })
	revoked := h.Consumer.Revoke(p0)
	close(b.release)
	h.Await(revoked, "the revocation")
	if err, _ := b.endedWith(1); err != nil {
		t.Fatalf("the call ended with %v, want nil: it finished within the join timeout", err)
	}
	if got := h.Consumer.Committed(p0); got != 3 {
		t.Fatalf("committed %d at the revocation, want 3 (everything, the released call included)", got)
	}
}

// TestBatchKeepsChainContext shows that a batch is not cancelled with the partition
// of its first message: other partitions' offsets ride in it.
func TestBatchKeepsChainContext(t *testing.T) {
	p0 := processor.Partition{Topic: "t", Index: 0}
	p1 := processor.Partition{Topic: "t", Index: 1}
	batchCtx := make(chan context.Context, 1)
	submitted := make(chan struct{}, 8)
	factory := processor.FactoryFunc[int](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[int], error) {
		sink := NewRunTask(func(ctx context.Context, m processor.Message[[]processor.Message[int]]) ([]processor.Message[int], error) {
			select {
			case batchCtx <- ctx:
			default:
			}
			return m.Payload, nil
		}, NewCommitOffsets[[]processor.Message[int]](commit))
		batch, err := NewBatch(BatchLimits[int]{MaxSize: 2, MaxWait: time.Hour}, processor.Strategy[[]processor.Message[int]](sink))
		if err != nil {
			return nil, err
		}
		return NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) {
			submitted <- struct{}{}
			return m.Payload, nil
		}, processor.Strategy[int](batch)), nil
	})
	h := processortest.NewHarness(t, nil, factory, processor.Config[int]{JoinTimeout: 50 * time.Millisecond})
	h.Consumer.Produce(p0, 0)
	h.Consumer.Assign(p0, p1)
	h.Start()
	// The batch's first message is p0's; revoke p0 before the batch is full.
	select {
	case <-submitted:
	case <-time.After(processortest.WaitTimeout):
		t.Fatal("p0's message was not submitted")
	}
	h.Await(h.Consumer.Revoke(p0), "the revocation")
	h.Consumer.Produce(p1, 100)
	var ctx context.Context
	select {
	case ctx = <-batchCtx:
	case <-time.After(processortest.WaitTimeout):
		t.Fatal("no batch reached the sink")
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("the batch's context is %v after a cooperative revocation of one partition, want live", err)
	}
	h.WaitUntil("p1 committed", func() bool { return h.Consumer.Committed(p1) == 1 })
}
