package strategies

import (
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

func TestUnbatch(t *testing.T) {
	batchOf := func(c processor.Committable, msgs ...processor.Message[string]) processor.Message[[]processor.Message[string]] {
		return processor.NewMessage(msgs, c, time.Unix(9, 0))
	}
	merged := processor.CommittableFromMap(map[processor.Partition]int64{tp0: 3, tp1: 7})
	tests := []struct {
		name     string
		in       processor.Message[[]processor.Message[string]]
		want     []processor.Committable
		payloads []string
		filtered []bool
	}{
		{"own committables, last the batch's",
			batchOf(merged, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1), brokerMsg("c", tp0, 2)),
			[]processor.Committable{processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2), merged},
			[]string{"a", "b", "c"}, []bool{false, false, false}},
		{"filtered inside stays filtered",
			batchOf(merged, brokerMsg("a", tp0, 0), processor.NewFiltered[string](processor.CommittableOf(tp0, 3), time.Unix(2, 0))),
			[]processor.Committable{processor.CommittableOf(tp0, 1), merged},
			[]string{"a", ""}, []bool{false, true}},
		{"empty batch becomes filtered", batchOf(merged),
			[]processor.Committable{merged}, []string{""}, []bool{true}},
		{"filtered batch passes",
			processor.NewFiltered[[]processor.Message[string]](merged, time.Unix(9, 0)),
			[]processor.Committable{merged}, []string{""}, []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[string]{}
			s := NewUnbatch(next)
			if err := s.Submit(tt.in); err != nil {
				t.Fatalf("Submit = %v", err)
			}
			got := next.messages()
			checkCommittables(t, got, tt.want...)
			for i, m := range got {
				if m.Payload != tt.payloads[i] || m.Filtered() != tt.filtered[i] {
					t.Fatalf("message %d = %q filtered=%v, want %q filtered=%v", i, m.Payload, m.Filtered(), tt.payloads[i], tt.filtered[i])
				}
			}
		})
	}
}

func TestUnbatchBackpressureKeepsRemainder(t *testing.T) {
	next := &recorder[string]{}
	s := NewUnbatch(next)
	batch := processor.NewMessage([]processor.Message[string]{brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1), brokerMsg("c", tp0, 2)},
		processor.CommittableOf(tp0, 3), time.Unix(2, 0))
	n := 0
	next.reject = func(processor.Message[string]) bool { n++; return n == 2 }
	if err := s.Submit(batch); err != nil {
		t.Fatalf("Submit = %v, want nil (remainder held)", err)
	}
	if err := s.Submit(batch); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while holding = %v, want ErrMessageRejected", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2), processor.CommittableOf(tp0, 3))
	if got[0].Payload != "a" || got[1].Payload != "b" || got[2].Payload != "c" {
		t.Fatalf("forwarded %+v, want a, b, c once each", got)
	}
	if err := s.Submit(batch); err != nil {
		t.Fatalf("Submit after draining = %v", err)
	}
}

func TestUnbatchJoin(t *testing.T) {
	next := &recorder[string]{}
	s := NewUnbatch(next)
	next.rejectAll(true)
	batch := processor.NewMessage([]processor.Message[string]{brokerMsg("a", tp0, 0)}, processor.CommittableOf(tp0, 1), time.Unix(0, 0))
	if err := s.Submit(batch); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	s.Close()
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages with a done ctx and next rejecting, want 0", n)
	}
	checkJoined(t, next)
}
