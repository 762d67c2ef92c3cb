package store

import (
	"slices"
	"testing"
	"time"
)

// The log keeps what was flushed within the window, by trace, and forgets the rest.
func TestFlushedLogForgetsPastTheWindow(t *testing.T) {
	var l flushedLog
	seg := func(pt string, ids ...string) map[string]FlushedSegment {
		return map[string]FlushedSegment{pt: {pt: pt, spanIDs: ids}}
	}
	window := 10 * time.Second
	l.add(seg("1:t", "a", "b"), t0, window)
	l.add(seg("1:u", "c"), t0.Add(5*time.Second), window)
	l.add(seg("1:t", "d"), t0.Add(12*time.Second), window)
	if l.spans != 2 {
		t.Errorf("the log holds %d spans at 12 s, want 2 (a and b are older than the window)", l.spans)
	}
	got := l.since(t0.Add(16*time.Second), window)
	if len(got) != 1 || !slices.Equal(got["1:t"].ids, []string{"d"}) || !got["1:t"].at.Equal(t0.Add(12*time.Second)) {
		t.Errorf("since(16 s) = %+v, want trace 1:t with d recorded at 12 s", got)
	}
}
