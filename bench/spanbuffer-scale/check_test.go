package spanbufferscale

import (
	"fmt"
	"strings"
	"testing"
)

// segmentJSON renders the spans s of trace t as the flusher would: one message,
// each span marked with segment as its segment id and the root as is_segment.
func segmentJSON(t int, segment string, s ...int) []byte {
	var spans []string
	for _, i := range s {
		spans = append(spans, fmt.Sprintf(`{"span_id":"%s","trace_id":"%s","is_segment":%v,"attributes":{"sentry.segment.id":{"type":"string","value":"%s"}}}`,
			spanID(t, i), traceID(t), i == 0, segment))
	}
	return []byte(`{"flush_id":"00","spans":[` + strings.Join(spans, ",") + `]}`)
}

// TestAccounting checks that the correctness check tells a clean run from each
// kind of fault it looks for.
func TestAccounting(t *testing.T) {
	all := []int{0, 1, 2, 3, 4}
	for _, tc := range []struct {
		name     string
		messages [][]byte
		want     result
	}{
		{"clean", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), all...)},
			result{out: 10, messages: 2}},
		{"lost", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), 0, 1, 2, 3)},
			result{out: 9, lost: 1, messages: 2}},
		{"duplicate segment", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), all...), segmentJSON(1, spanID(1, 0), all...)},
			result{out: 10, duplicates: 5, messages: 3}},
		{"split trace", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), 0, 1, 2), segmentJSON(1, spanID(1, 0), 3, 4)},
			result{out: 10, messages: 3, split: 1}},
		{"wrong segment", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), 0, 1, 2), segmentJSON(1, spanID(1, 3), 3, 4)},
			result{out: 10, messages: 3, split: 1, misplaced: 2}},
		{"mixed", [][]byte{segmentJSON(0, spanID(0, 0), 0, 1, 2, 3, 4),
			[]byte(strings.Replace(string(segmentJSON(1, spanID(1, 0), all...)), spanID(1, 0)+`"}}}]`, spanID(0, 0)+`"}}}]`, 1))},
			result{out: 10, messages: 2, mixed: 1, misplaced: 1}},
		{"foreign and undecodable", [][]byte{segmentJSON(0, spanID(0, 0), all...), segmentJSON(1, spanID(1, 0), all...), segmentJSON(7, spanID(7, 0), 0), []byte("{")},
			result{out: 10, messages: 4, foreign: 1, undecodable: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccounting(2)
			for _, m := range tc.messages {
				a.add(m)
			}
			got := a.result()
			tc.want.spans = 10
			if got.example == "" && !tc.want.ok() {
				t.Errorf("no example of what went wrong: %v", got)
			}
			got.example = ""
			if got != tc.want {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if got.ok() != (tc.name == "clean") {
				t.Errorf("ok() = %v for %v", got.ok(), got)
			}
		})
	}
}

// TestSpanIDs checks that a span id tells its trace and place, and that ids of no
// produced span are told apart.
func TestSpanIDs(t *testing.T) {
	for tr := range 3 {
		for s := range spansPerTrace {
			gt, gs, ok := placeOf(spanID(tr, s), 3)
			if !ok || gt != tr || gs != s {
				t.Errorf("placeOf(spanID(%d, %d)) = %d, %d, %v", tr, s, gt, gs, ok)
			}
		}
	}
	for _, id := range []string{spanID(3, 0), spanID(0, 5), "0000000000000000", "zz", "1"} {
		if _, _, ok := placeOf(id, 3); ok {
			t.Errorf("placeOf(%q) found a span", id)
		}
	}
}
