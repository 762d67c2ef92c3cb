package strategies

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

func splitWords(_ context.Context, m processor.Message[string]) ([]string, error) {
	return strings.Fields(m.Payload), nil
}

func TestUnfold(t *testing.T) {
	tests := []struct {
		name         string
		in           processor.Message[string]
		wantPayloads []string
		wantFiltered bool
	}{
		{"many", brokerMsg("a b c", tp0, 4), []string{"a", "b", "c"}, false},
		{"one", brokerMsg("a", tp0, 4), []string{"a"}, false},
		{"none becomes filtered", brokerMsg("", tp0, 4), []string{""}, true},
		{"filtered passes", processor.NewFiltered[string](processor.CommittableOf(tp0, 5), time.Unix(4, 0)), []string{""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[string]{}
			s := NewUnfold(splitWords, next)
			if err := s.Submit(tt.in); err != nil {
				t.Fatalf("Submit = %v", err)
			}
			got := next.messages()
			if len(got) != len(tt.wantPayloads) {
				t.Fatalf("forwarded %d messages, want %d", len(got), len(tt.wantPayloads))
			}
			for i, m := range got {
				last := i == len(got)-1
				if m.Payload != tt.wantPayloads[i] || m.Filtered() != (tt.wantFiltered && last) {
					t.Fatalf("output %d = %q filtered=%v, want %q filtered=%v", i, m.Payload, m.Filtered(), tt.wantPayloads[i], tt.wantFiltered && last)
				}
				want := processor.Committable{}
				if last {
					want = processor.CommittableOf(tp0, 5)
				}
				if !m.Committable.Equal(want) {
					t.Fatalf("output %d committable %v, want %v", i, m.Committable, want)
				}
				if !m.Timestamp.Equal(time.Unix(4, 0)) {
					t.Fatalf("output %d timestamp %v, want the input's", i, m.Timestamp)
				}
			}
		})
	}
}

func TestUnfoldBackpressureHoldsRemainder(t *testing.T) {
	next := &recorder[string]{}
	calls := 0
	s := NewUnfold(func(ctx context.Context, m processor.Message[string]) ([]string, error) {
		calls++
		return splitWords(ctx, m)
	}, next)
	// Take "a", reject "b" twice.
	n := 0
	next.reject = func(m processor.Message[string]) bool { n++; return n == 2 || n == 3 }
	if err := s.Submit(brokerMsg("a b c", tp0, 0)); err != nil {
		t.Fatalf("Submit = %v, want nil (remainder held)", err)
	}
	if err := s.Submit(brokerMsg("d", tp0, 1)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while holding = %v, want ErrMessageRejected", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if got := len(next.messages()); got != 1 {
		t.Fatalf("forwarded %d outputs while next rejects, want 1", got)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if err := s.Submit(brokerMsg("d", tp0, 1)); err != nil {
		t.Fatalf("Submit after draining = %v", err)
	}
	got := next.messages()
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, m.Payload)
	}
	if strings.Join(payloads, " ") != "a b c d" || calls != 2 {
		t.Fatalf("forwarded %v with fn run %d times, want [a b c d] with 2 runs", payloads, calls)
	}
	checkCommittables(t, got, processor.Committable{}, processor.Committable{}, processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2))
}

func TestUnfoldError(t *testing.T) {
	next := &recorder[string]{}
	boom := errors.New("boom")
	s := NewUnfold(func(_ context.Context, m processor.Message[string]) ([]string, error) {
		return nil, processor.Invalid(m, boom)
	}, next)
	err := s.Submit(brokerMsg("x", tp0, 9))
	if inv, ok := processor.AsInvalid(err); !ok || inv.Offset != 9 {
		t.Fatalf("Submit = %v, want an invalid message error at offset 9", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages after an error, want 0", n)
	}
}

func TestUnfoldJoin(t *testing.T) {
	next := &recorder[string]{}
	s := NewUnfold(splitWords, next)
	rejectTimes(next, 2)
	if err := s.Submit(brokerMsg("a b", tp0, 0)); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	s.Close()
	if err := s.Join(t.Context()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	checkCommittables(t, next.messages(), processor.Committable{}, processor.CommittableOf(tp0, 1))
	checkJoined(t, next)
}
