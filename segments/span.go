package segments

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalidSpan is wrapped by every error Decode returns. The consumer turns such an
// error into an invalid message (dead-letter queue) and carries on.
var ErrInvalidSpan = errors.New("segments: invalid span")

// Span is one decoded input span. Payload is the message value, kept verbatim; the
// other fields are what the buffer needs to place the span in its segment.
type Span struct {
	ProjectID uint64
	TraceID   string
	SpanID    string
	// ParentSpanID is empty for a span without a parent.
	ParentSpanID string
	// SegmentID is attributes["sentry.segment.id"].value, or empty.
	SegmentID string
	// IsSegment is the span's is_segment field.
	IsSegment bool
	// Partition is the Kafka partition the span was read from; it picks the flush
	// queue (shard) of its segment.
	Partition int32
	Payload   []byte
}

// IsRoot reports whether the span is a segment root: it has no parent or says it is
// a segment.
func (s *Span) IsRoot() bool { return s.ParentSpanID == "" || s.IsSegment }

// effectiveParent is the span id the span hangs under when segments are assembled:
// itself for a root, else the segment id it was given, else its parent.
func (s *Span) effectiveParent() string {
	switch {
	case s.IsRoot():
		return s.SpanID
	case s.SegmentID != "":
		return s.SegmentID
	default:
		return s.ParentSpanID
	}
}

// wireSpan holds only the fields Decode checks; encoding/json skips the rest without
// building values for them.
type wireSpan struct {
	ProjectID      *uint64  `json:"project_id"`
	TraceID        *string  `json:"trace_id"`
	SpanID         *string  `json:"span_id"`
	ParentSpanID   *string  `json:"parent_span_id"`
	IsSegment      *bool    `json:"is_segment"`
	StartTimestamp *float64 `json:"start_timestamp"`
	EndTimestamp   *float64 `json:"end_timestamp"`
	Attributes     *struct {
		SegmentID *struct {
			Value *string `json:"value"`
		} `json:"sentry.segment.id"`
	} `json:"attributes"`
}

// Decode parses one Kafka message value read from partition. It returns an error
// wrapping ErrInvalidSpan when the value is not a JSON object, a required field
// (project_id, trace_id, span_id, start_timestamp, end_timestamp) is missing or null,
// or a field has the wrong type (timestamps given as strings, for example).
//
// Ids must be 1 to 64 characters of [0-9A-Za-z_-]: they become part of Redis keys and
// hash tags, where '{', '}' or ':' would break the layout.
func Decode(value []byte, partition int32) (Span, error) {
	var w wireSpan
	if err := json.Unmarshal(value, &w); err != nil {
		return Span{}, fmt.Errorf("%w: %w", ErrInvalidSpan, err)
	}
	// json.Unmarshal accepts a top-level null for a struct; a span must be an object.
	if i := firstNonSpace(value); value[i] != '{' {
		return Span{}, fmt.Errorf("%w: not a JSON object", ErrInvalidSpan)
	}
	switch {
	case w.ProjectID == nil:
		return Span{}, fmt.Errorf("%w: project_id is missing or null", ErrInvalidSpan)
	case w.StartTimestamp == nil:
		return Span{}, fmt.Errorf("%w: start_timestamp is missing or null", ErrInvalidSpan)
	case w.EndTimestamp == nil:
		return Span{}, fmt.Errorf("%w: end_timestamp is missing or null", ErrInvalidSpan)
	}
	s := Span{ProjectID: *w.ProjectID, Partition: partition, Payload: value}
	var err error
	if s.TraceID, err = requiredID("trace_id", w.TraceID); err != nil {
		return Span{}, err
	}
	if s.SpanID, err = requiredID("span_id", w.SpanID); err != nil {
		return Span{}, err
	}
	if s.ParentSpanID, err = optionalID("parent_span_id", w.ParentSpanID); err != nil {
		return Span{}, err
	}
	if w.Attributes != nil && w.Attributes.SegmentID != nil {
		if s.SegmentID, err = optionalID(`attributes["sentry.segment.id"].value`, w.Attributes.SegmentID.Value); err != nil {
			return Span{}, err
		}
	}
	s.IsSegment = w.IsSegment != nil && *w.IsSegment
	return s, nil
}

func requiredID(field string, v *string) (string, error) {
	if v == nil || *v == "" {
		return "", fmt.Errorf("%w: %s is missing, null or empty", ErrInvalidSpan, field)
	}
	return optionalID(field, v)
}

func optionalID(field string, v *string) (string, error) {
	if v == nil {
		return "", nil
	}
	id := *v
	if len(id) > 64 {
		return "", fmt.Errorf("%w: %s is longer than 64 characters", ErrInvalidSpan, field)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return "", fmt.Errorf("%w: %s %q has a character other than [0-9A-Za-z_-]", ErrInvalidSpan, field, id)
		}
	}
	return id, nil
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return -1
}
