package store

import (
	"slices"
	"strings"
)

// TraceParent returns the W3C trace context of the segment's root span as a
// traceparent header value, "00-<trace id>-<root span id>-01", and true. A segment
// has one only when its root span is among its spans and the ids have the W3C form
// (32 and 16 hex digits, not all zeros; written in lower case): a segment flushed
// without its root (after the long timeout) or a detached part of one has no span
// to name, and ids of another form cannot be written in the header.
//
// The flags say sampled: the span was recorded, as every span in the buffer was.
func (s FlushedSegment) TraceParent() (string, bool) {
	if !validHexID(s.TraceID, 32) || !validHexID(s.RootID, 16) || !slices.Contains(s.spanIDs, s.RootID) {
		return "", false
	}
	return "00-" + strings.ToLower(s.TraceID) + "-" + strings.ToLower(s.RootID) + "-01", true
}

// validHexID reports whether id is n hex digits, not all zeros.
func validHexID(id string, n int) bool {
	if len(id) != n {
		return false
	}
	nonZero := false
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			nonZero = true
		default:
			return false
		}
	}
	return nonZero
}
