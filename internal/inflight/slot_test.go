package inflight

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

// stubNext answers Submit with the errors in answers, one per call, then nil, and
// records what it takes.
type stubNext struct {
	answers []error
	taken   []string
}

func (n *stubNext) Submit(m processor.Message[string]) error {
	if len(n.answers) > 0 {
		err := n.answers[0]
		n.answers = n.answers[1:]
		if err != nil {
			return err
		}
	}
	n.taken = append(n.taken, m.Payload)
	return nil
}
func (*stubNext) Poll() error                { return nil }
func (*stubNext) Close()                     {}
func (*stubNext) Join(context.Context) error { return nil }
func (*stubNext) Terminate()                 {}

func TestSlot(t *testing.T) {
	rejected, errBoom := processor.ErrMessageRejected, errors.New("boom")
	for _, tc := range []struct {
		name    string
		answers []error
		// wantSubmit and wantRetry are what Submit and then one Retry return; the
		// slot is full after them as wantFull says.
		wantSubmit, wantRetry error
		wantFull              bool
		wantTaken             int
	}{
		{"taken at once", nil, nil, nil, false, 1},
		{"failed at once", []error{errBoom}, errBoom, nil, false, 0},
		{"held, then taken", []error{rejected}, nil, nil, false, 1},
		{"held, still rejected", []error{rejected, rejected}, nil, rejected, true, 0},
		{"held, then failed: released", []error{rejected, errBoom}, nil, errBoom, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &stubNext{answers: tc.answers}
			var s Slot[string]
			msg := processor.NewMessage("a", processor.Committable{}, time.Time{})
			if err := s.Submit(next, msg); !errors.Is(err, tc.wantSubmit) {
				t.Fatalf("Submit = %v, want %v", err, tc.wantSubmit)
			}
			if err := s.Retry(next); !errors.Is(err, tc.wantRetry) {
				t.Fatalf("Retry = %v, want %v", err, tc.wantRetry)
			}
			if s.Full() != tc.wantFull || len(next.taken) != tc.wantTaken {
				t.Fatalf("Full = %v, taken %q; want %v, %d taken", s.Full(), next.taken, tc.wantFull, tc.wantTaken)
			}
			s.Clear()
			if s.Full() {
				t.Fatal("Full after Clear")
			}
		})
	}
}
