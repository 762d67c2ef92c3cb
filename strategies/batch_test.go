package strategies

import (
	"testing"

	"github.com/creekstream/creek/processor"
)

func TestBatch(t *testing.T) {
	tests := []struct {
		name     string
		size     func(processor.Message[string]) int
		payloads []string
		join     bool
		// want is the committable of every emitted batch and its length.
		want     []processor.Committable
		wantLens []int
	}{
		{name: "half a batch", payloads: []string{"a"}},
		{name: "one batch", payloads: []string{"a", "b", "c"},
			want: []processor.Committable{processor.CommittableOf(tp0, 3)}, wantLens: []int{3}},
		{name: "two batches", payloads: []string{"a", "b", "c", "d", "e", "f", "g"},
			want: []processor.Committable{processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 6)}, wantLens: []int{3, 3}},
		{name: "custom size", size: func(m processor.Message[string]) int { return len(m.Payload) },
			payloads: []string{"a", "bb", "c", "ddd"},
			want:     []processor.Committable{processor.CommittableOf(tp0, 2), processor.CommittableOf(tp0, 4)}, wantLens: []int{2, 2}},
		{name: "join flushes partial", payloads: []string{"a", "b", "c", "d"}, join: true,
			want: []processor.Committable{processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 4)}, wantLens: []int{3, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[[]processor.Message[string]]{}
			s, err := NewBatch(BatchLimits[string]{MaxSize: 3, Size: tt.size}, next)
			if err != nil {
				t.Fatalf("NewBatch = %v", err)
			}
			for i, p := range tt.payloads {
				if err := s.Submit(brokerMsg(p, tp0, int64(i))); err != nil {
					t.Fatalf("Submit(%q) = %v", p, err)
				}
			}
			if tt.join {
				s.Close()
				if err := s.Join(doneCtx()); err != nil {
					t.Fatalf("Join = %v", err)
				}
			}
			got := next.messages()
			checkCommittables(t, got, tt.want...)
			off := 0
			for i, b := range got {
				if len(b.Payload) != tt.wantLens[i] {
					t.Fatalf("batch %d has %d messages, want %d", i, len(b.Payload), tt.wantLens[i])
				}
				for _, m := range b.Payload {
					if m.Payload != tt.payloads[off] {
						t.Fatalf("batch %d holds %q, want %q in submit order", i, m.Payload, tt.payloads[off])
					}
					off++
				}
			}
		})
	}
}
