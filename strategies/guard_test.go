package strategies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

var errBadPayload = errors.New("bad payload")

// heldInner is an inner strategy the test drives: it keeps what it is given until
// let says how many may go, reports "bad" invalid from Submit and "bad-later" invalid
// from the next Poll, and drops "drop" without a trace.
type heldInner struct {
	next    processor.Strategy[string]
	pending []processor.Message[string]
	let     int
	pollErr error
}

func (s *heldInner) Submit(m processor.Message[string]) error {
	if m.Filtered() {
		panic("a filtered message reached the inner strategy")
	}
	switch m.Payload {
	case "bad":
		return processor.Invalid(m, errBadPayload)
	case "bad-later":
		s.pollErr = processor.Invalid(m, errBadPayload)
		return nil
	case "drop":
		return nil
	}
	s.pending = append(s.pending, m)
	return nil
}

func (s *heldInner) forward(n int) error {
	for n > 0 && len(s.pending) > 0 {
		if err := s.next.Submit(s.pending[0]); err != nil {
			return err
		}
		s.pending = s.pending[1:]
		n--
		s.let--
	}
	return nil
}

func (s *heldInner) Poll() error {
	if err := ignoreRejected(s.forward(s.let)); err != nil {
		return err
	}
	err := s.pollErr
	s.pollErr = nil
	return err
}

func (s *heldInner) Close() {}

func (s *heldInner) Join(ctx context.Context) error {
	if ctx.Err() == nil {
		if err := s.forward(len(s.pending)); err != nil {
			return err
		}
	}
	s.next.Close()
	return s.next.Join(ctx)
}

func (s *heldInner) Terminate() { s.next.Terminate() }

func newTestGuard() (*Guard[string], *heldInner, *recorder[string]) {
	inner := &heldInner{}
	next := &recorder[string]{}
	g := NewGuard(func(n processor.Strategy[string]) processor.Strategy[string] {
		inner.next = n
		return inner
	}, processor.Strategy[string](next))
	return g, inner, next
}

func filteredAt(p processor.Partition, offset int64) processor.Message[string] {
	return processor.NewFiltered[string](processor.CommittableOf(p, offset+1), time.Time{})
}

func TestGuardFilteredGoesAround(t *testing.T) {
	g, _, next := newTestGuard()
	submitAll(t, g, filteredAt(tp0, 0), filteredAt(tp1, 0))
	checkPayloads(t, next, "-", "-")
}

func TestGuardFilteredWaitsForEarlierWork(t *testing.T) {
	g, inner, next := newTestGuard()
	submitAll(t, g, brokerMsg("a", tp0, 0), filteredAt(tp0, 1), brokerMsg("c", tp0, 2), filteredAt(tp0, 3))
	poll(t, g)
	checkPayloads(t, next) // nothing may commit past a, still inside

	inner.let = 1
	poll(t, g)
	checkPayloads(t, next, "a", "-") // a is out, so its follower goes; the last waits for c

	inner.let = 1
	poll(t, g)
	checkPayloads(t, next, "a", "-", "c", "-")
	checkCommittables(t, next.messages(),
		processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2),
		processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 4))
}

func TestGuardInvalidBecomesFiltered(t *testing.T) {
	t.Run("from Submit", func(t *testing.T) {
		g, inner, next := newTestGuard()
		submitAll(t, g, brokerMsg("a", tp0, 0))
		err := g.Submit(brokerMsg("bad", tp0, 1))
		inv, ok := processor.AsInvalid(err)
		if !ok || inv.Partition != tp0 || inv.Offset != 1 || !errors.Is(err, errBadPayload) {
			t.Fatalf("Submit(bad) = %v, want the inner strategy's invalid error for %s offset 1", err, tp0)
		}
		poll(t, g)
		checkPayloads(t, next) // the filtered offset must not overtake a

		inner.let = 1
		poll(t, g)
		checkPayloads(t, next, "a", "-")
		checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2))
	})

	t.Run("from Poll", func(t *testing.T) {
		g, inner, next := newTestGuard()
		submitAll(t, g, brokerMsg("a", tp0, 0), brokerMsg("bad-later", tp0, 1), brokerMsg("c", tp0, 2))
		err := g.Poll()
		if inv, ok := processor.AsInvalid(err); !ok || inv.Offset != 1 {
			t.Fatalf("Poll = %v, want the inner strategy's invalid error for offset 1", err)
		}
		checkPayloads(t, next)

		inner.let = 2
		poll(t, g)
		checkPayloads(t, next, "a", "-", "c")
		checkCommittables(t, next.messages(),
			processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2), processor.CommittableOf(tp0, 3))
	})
}

func TestGuardRetriesRejectedRelease(t *testing.T) {
	g, _, next := newTestGuard()
	rejectTimes(next, 1)
	if err := g.Submit(filteredAt(tp0, 0)); err != nil {
		t.Fatalf("Submit = %v, want the filtered message held, not rejected", err)
	}
	checkPayloads(t, next)
	poll(t, g)
	checkPayloads(t, next, "-")
}

func TestGuardJoin(t *testing.T) {
	t.Run("in time releases everything held", func(t *testing.T) {
		g, _, next := newTestGuard()
		// The inner strategy drops its message without a trace, so only its
		// finished Join tells Guard that nothing before the filtered one is left.
		submitAll(t, g, brokerMsg("drop", tp0, 0), filteredAt(tp0, 1))
		poll(t, g)
		checkPayloads(t, next)
		if err := g.Join(context.Background()); err != nil {
			t.Fatalf("Join = %v", err)
		}
		checkPayloads(t, next, "-")
		checkJoined(t, next)
	})

	t.Run("out of time abandons what is held behind unfinished work", func(t *testing.T) {
		g, _, next := newTestGuard()
		submitAll(t, g, brokerMsg("a", tp0, 0), filteredAt(tp0, 1))
		if err := g.Join(doneCtx()); err != nil {
			t.Fatalf("Join = %v", err)
		}
		checkPayloads(t, next)
		checkJoined(t, next)
	})
}

func TestGuardTerminate(t *testing.T) {
	g, _, next := newTestGuard()
	submitAll(t, g, brokerMsg("a", tp0, 0), filteredAt(tp0, 1))
	g.Terminate()
	if !next.terminated {
		t.Fatal("next step not terminated")
	}
	if len(g.held) != 0 {
		t.Fatalf("%d filtered messages still held after Terminate, want 0", len(g.held))
	}
}
