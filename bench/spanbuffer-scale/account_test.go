package spanbufferscale

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// spansPerTrace is the size of every trace: a root and its direct children.
const spansPerTrace = 5

// idsPerTrace spaces the span ids of consecutive traces, so that a span id tells
// its trace and its place in it.
const idsPerTrace = 8

// traceID returns trace t's id.
func traceID(t int) string { return fmt.Sprintf("%032x", t+1) }

// spanID returns the id of span s (0 is the root) of trace t.
func spanID(t, s int) string { return fmt.Sprintf("%016x", t*idsPerTrace+1+s) }

// spanValue returns span s of trace t as the span buffer reads it: the root has no
// parent, every other span is the root's child.
func spanValue(t, s int) []byte {
	parent := `"` + spanID(t, 0) + `"`
	if s == 0 {
		parent = "null"
	}
	return fmt.Appendf(nil, `{"project_id":1,"trace_id":"%s","span_id":"%s","parent_span_id":%s,"start_timestamp":1700000000.0,"end_timestamp":1700000001.0,"description":"GET /api/items"}`,
		traceID(t), spanID(t, s), parent)
}

// placeOf returns the trace and the place in it of the span with id id, or ok false
// for an id no trace of traces has.
func placeOf(id string, traces int) (t, s int, ok bool) {
	n, err := strconv.ParseUint(id, 16, 64)
	if err != nil || len(id) != 16 || n == 0 {
		return 0, 0, false
	}
	t, s = int((n-1)/idsPerTrace), int((n-1)%idsPerTrace)
	if t >= traces || s >= spansPerTrace {
		return 0, 0, false
	}
	return t, s, true
}

// accounting checks the segment messages of a run against the traces produced.
// Only one goroutine uses it.
type accounting struct {
	traces   int
	copies   []uint8 // per span (t*spansPerTrace+s): how often it came out, up to 255
	firstMsg []int   // per trace: the message its first span came out in; -1 none yet, -2 split

	messages int
	// undecodable counts messages that are not segments; foreign, spans of no
	// trace produced; misplaced, copies with the wrong trace, segment id or
	// is_segment; mixed, messages whose spans do not share one segment id; split,
	// traces whose spans came out (each the first time) in more than one message.
	undecodable, foreign, misplaced, mixed, split int
	// example describes the first problem seen, for the failure message.
	example string
}

func newAccounting(traces int) *accounting {
	a := &accounting{traces: traces, copies: make([]uint8, traces*spansPerTrace), firstMsg: make([]int, traces)}
	for i := range a.firstMsg {
		a.firstMsg[i] = -1
	}
	return a
}

// segmentMessage is what the check reads of a segment message.
type segmentMessage struct {
	Spans []struct {
		SpanID     string `json:"span_id"`
		TraceID    string `json:"trace_id"`
		IsSegment  bool   `json:"is_segment"`
		Attributes map[string]struct {
			Value string `json:"value"`
		} `json:"attributes"`
	} `json:"spans"`
}

// add accounts for one segment message.
func (a *accounting) add(value []byte) {
	var msg segmentMessage
	if err := json.Unmarshal(value, &msg); err != nil || len(msg.Spans) == 0 {
		a.undecodable++
		a.note(fmt.Sprintf("message %d is not a segment (%v): %.200s", a.messages, err, value))
		a.messages++
		return
	}
	n := a.messages
	a.messages++
	segment := ""
	for i, sp := range msg.Spans {
		got := sp.Attributes["sentry.segment.id"].Value
		if i == 0 {
			segment = got
		} else if got != segment && segment != "" {
			a.mixed++
			a.note(fmt.Sprintf("message %d holds spans of segments %s and %s", n, segment, got))
			segment = "" // count the message once
		}
		t, s, ok := placeOf(sp.SpanID, a.traces)
		if !ok {
			a.foreign++
			a.note(fmt.Sprintf("span %q of message %d was never produced", sp.SpanID, n))
			continue
		}
		c := &a.copies[t*spansPerTrace+s]
		if *c < 255 {
			*c++
		}
		root := spanID(t, 0)
		if sp.TraceID != traceID(t) || got != root || sp.IsSegment != (s == 0) {
			a.misplaced++
			a.note(fmt.Sprintf("span %s (trace %s, segment %s) came out in trace %s under segment %s with is_segment %v",
				sp.SpanID, traceID(t), root, sp.TraceID, got, sp.IsSegment))
		}
		if *c > 1 {
			continue // a copy: counted as a duplicate, not as a split
		}
		switch first := a.firstMsg[t]; {
		case first == -1:
			a.firstMsg[t] = n
		case first >= 0 && first != n:
			a.split++
			a.note(fmt.Sprintf("trace %s came out in messages %d and %d", traceID(t), first, n))
			a.firstMsg[t] = -2 // count the trace once
		}
	}
}

func (a *accounting) note(s string) {
	if a.example == "" {
		a.example = s
	}
}

// result is the outcome of a check.
type result struct {
	spans, out, lost, duplicates                            int
	messages, undecodable, foreign, misplaced, mixed, split int
	example                                                 string
}

func (a *accounting) result() result {
	r := result{spans: len(a.copies), messages: a.messages, undecodable: a.undecodable, foreign: a.foreign,
		misplaced: a.misplaced, mixed: a.mixed, split: a.split, example: a.example}
	for i, c := range a.copies {
		switch {
		case c == 0:
			r.lost++
			if r.example == "" {
				r.example = fmt.Sprintf("span %s never came out", spanID(i/spansPerTrace, i%spansPerTrace))
			}
		default:
			r.out++
			r.duplicates += int(c) - 1
			if c > 1 && r.example == "" {
				r.example = fmt.Sprintf("span %s came out %d times", spanID(i/spansPerTrace, i%spansPerTrace), c)
			}
		}
	}
	return r
}

// ok reports whether every span came out once, in its own trace's one message.
func (r result) ok() bool {
	return r.lost == 0 && r.duplicates == 0 && r.undecodable == 0 && r.foreign == 0 &&
		r.misplaced == 0 && r.mixed == 0 && r.split == 0
}

func (r result) String() string {
	return fmt.Sprintf("spans %d: out %d, lost %d, duplicates %d; messages %d: undecodable %d, foreign spans %d, misplaced %d, mixed %d, split traces %d",
		r.spans, r.out, r.lost, r.duplicates, r.messages, r.undecodable, r.foreign, r.misplaced, r.mixed, r.split)
}
