package processor_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// runStrategy takes runs (processor.RunSubmitter), stages what it takes, and
// rejects a message when reject says so. It notes every message it took and the
// size of every SubmitRun call.
type runStrategy struct {
	commit processor.CommitFunc
	reject func(m processor.Message[string]) bool
	work   time.Duration

	mu     sync.Mutex
	taken  []string
	chunks []int
}

func (s *runStrategy) Submit(m processor.Message[string]) error {
	_, err := s.SubmitRun([]processor.Message[string]{m})
	return err
}

func (s *runStrategy) SubmitRun(msgs []processor.Message[string]) (int, error) {
	s.mu.Lock()
	s.chunks = append(s.chunks, len(msgs))
	s.mu.Unlock()
	for i, m := range msgs {
		if s.reject != nil && s.reject(m) {
			return i, processor.ErrMessageRejected
		}
		time.Sleep(s.work) // the message's work, not a synchronisation
		s.mu.Lock()
		s.taken = append(s.taken, m.Payload)
		s.mu.Unlock()
		if err := s.commit(m.Committable, false); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

func (s *runStrategy) Poll() error                { return s.commit(processor.Committable{}, false) }
func (s *runStrategy) Close()                     {}
func (s *runStrategy) Join(context.Context) error { return s.commit(processor.Committable{}, true) }
func (s *runStrategy) Terminate()                 {}

func (s *runStrategy) snapshot() (taken []string, chunks []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.taken), slices.Clone(s.chunks)
}

func runHarness(t *testing.T, s *runStrategy) *processortest.Harness[string] {
	t.Helper()
	factory := processor.FactoryFunc[string](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[string], error) {
		s.commit = commit
		return s, nil
	})
	return processortest.NewHarness[string](t, nil, factory, processor.Config[string]{CommitPolicy: processor.ImmediateCommit()})
}

// A strategy that rejects in the middle of a run gets the rest of it again, after
// a poll, with nothing lost, doubled or reordered.
func TestRunRejectedMidwayLosesAndReordersNothing(t *testing.T) {
	offered := map[string]int{}
	s := &runStrategy{reject: func(m processor.Message[string]) bool {
		// Every seventh message is rejected on its first two offers.
		pos, _ := m.Origin()
		if pos.Offset%7 != 3 {
			return false
		}
		offered[m.Payload]++
		return offered[m.Payload] <= 2
	}}
	h := runHarness(t, s)
	var want []string
	for _, p := range []processor.Partition{p0, p1} {
		for o := range int64(200) {
			want = append(want, fmtPayload(p, o))
		}
		h.Consumer.Produce(p, want[len(want)-200:]...)
	}
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("both partitions committed to 200", func() bool {
		return h.Consumer.Committed(p0) == 200 && h.Consumer.Committed(p1) == 200
	})
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	taken, chunks := s.snapshot()
	if !slices.Equal(taken, want) {
		t.Fatalf("taken %d messages, want the %d produced, each once and in order; taken: %v", len(taken), len(want), taken)
	}
	if slices.Max(chunks) < 2 {
		t.Errorf("SubmitRun was only given single messages (%v); the loop should hand fast runs over in chunks", chunks)
	}
}

// Slow messages go to a RunSubmitter one at a time, so that the loop comes round
// (heartbeat, clock, due commits) between them.
func TestSlowRunIsHandedOverInSmallChunks(t *testing.T) {
	s := &runStrategy{work: 15 * time.Millisecond}
	h := runHarness(t, s)
	h.Consumer.Produce(p0, payloadsFor(p0, 16)...)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 16 committed", func() bool { return h.Consumer.Committed(p0) == 16 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, chunks := s.snapshot(); slices.Max(chunks) > 2 {
		t.Errorf("chunks of %v messages of 15 ms each; want at most 2, the loop coming round between them", chunks)
	}
}

func fmtPayload(p processor.Partition, o int64) string {
	return p.String() + "@" + strconv.FormatInt(o, 10)
}

func payloadsFor(p processor.Partition, n int64) []string {
	out := make([]string, n)
	for o := range n {
		out[o] = fmtPayload(p, o)
	}
	return out
}
