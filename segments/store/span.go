package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalidSpan is wrapped by every error Decode returns. The consumer turns such an
// error into an invalid message (dead-letter queue) and carries on.
var ErrInvalidSpan = errors.New("store: invalid span")

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

// Decode parses one Kafka message value read from partition. It returns an error
// wrapping ErrInvalidSpan when the value is not a JSON object, a required field
// (project_id, trace_id, span_id, start_timestamp, end_timestamp) is missing or null,
// a field has the wrong type (timestamps given as strings, for example), or a key
// the buffer reads or rewrites appears twice (see spanKeys).
//
// Keys match exactly, as the flush matches them when it writes is_segment and the
// segment id back (encoding/json alone would also accept "Span_ID"). Only the fields
// checked here are decoded; the rest is only validated as JSON.
//
// Ids must be 1 to 64 characters of [0-9A-Za-z_-]: they become part of Redis keys and
// hash tags, where '{', '}' or ':' would break the layout.
func Decode(value []byte, partition int32) (Span, error) {
	if !json.Valid(value) {
		var v any
		err := json.Unmarshal(value, &v) // only to say where the JSON breaks
		return Span{}, fmt.Errorf("%w: not JSON: %w", ErrInvalidSpan, err)
	}
	var project, trace, spanID, parent, isSegment, start, end, attrs []byte
	var seen keySet
	if _, err := scanObject(value, 0, func(key []byte, vs, ve int) {
		v := value[vs:ve]
		switch string(key) {
		case "project_id":
			project = v
		case "trace_id":
			trace = v
		case "span_id":
			spanID = v
		case "parent_span_id":
			parent = v
		case "is_segment":
			isSegment = v
		case "start_timestamp":
			start = v
		case "end_timestamp":
			end = v
		case "attributes":
			attrs = v
		}
		seen.add(key, spanKeys)
	}); err != nil {
		return Span{}, fmt.Errorf("%w: not a JSON object", ErrInvalidSpan)
	}
	if seen.dup != "" {
		return Span{}, fmt.Errorf("%w: duplicate key %q", ErrInvalidSpan, seen.dup)
	}

	s := Span{Partition: partition, Payload: value}
	var ts float64
	var err error
	switch {
	case isNull(project):
		return Span{}, fmt.Errorf("%w: project_id is missing or null", ErrInvalidSpan)
	case json.Unmarshal(project, &s.ProjectID) != nil:
		return Span{}, fmt.Errorf("%w: project_id %s is not a non-negative integer", ErrInvalidSpan, project)
	case isNull(start) || json.Unmarshal(start, &ts) != nil:
		return Span{}, fmt.Errorf("%w: start_timestamp %s is not a number of seconds", ErrInvalidSpan, orMissing(start))
	case isNull(end) || json.Unmarshal(end, &ts) != nil:
		return Span{}, fmt.Errorf("%w: end_timestamp %s is not a number of seconds", ErrInvalidSpan, orMissing(end))
	case !isNull(isSegment) && json.Unmarshal(isSegment, &s.IsSegment) != nil:
		return Span{}, fmt.Errorf("%w: is_segment %s is not a boolean", ErrInvalidSpan, isSegment)
	}
	if s.TraceID, err = requiredID("trace_id", trace); err != nil {
		return Span{}, err
	}
	if s.SpanID, err = requiredID("span_id", spanID); err != nil {
		return Span{}, err
	}
	if s.ParentSpanID, err = optionalID("parent_span_id", parent); err != nil {
		return Span{}, err
	}
	if s.SegmentID, err = segmentID(attrs); err != nil {
		return Span{}, err
	}
	return s, nil
}

// segmentID returns attributes["sentry.segment.id"].value, if there is one.
func segmentID(attrs []byte) (string, error) {
	if isNull(attrs) {
		return "", nil
	}
	if attrs[0] != '{' {
		return "", fmt.Errorf("%w: attributes is not an object", ErrInvalidSpan)
	}
	var seg, value []byte
	var seen keySet
	_, _ = scanObject(attrs, 0, func(key []byte, vs, ve int) {
		if string(key) == "sentry.segment.id" {
			seg = attrs[vs:ve]
		}
		seen.add(key, attributeKeys)
	})
	if seen.dup != "" {
		return "", fmt.Errorf("%w: attributes has a duplicate key %q", ErrInvalidSpan, seen.dup)
	}
	if isNull(seg) {
		return "", nil
	}
	if seg[0] != '{' {
		return "", fmt.Errorf(`%w: attributes["sentry.segment.id"] is not an object`, ErrInvalidSpan)
	}
	seen = keySet{}
	_, _ = scanObject(seg, 0, func(key []byte, vs, ve int) {
		if string(key) == "value" {
			value = seg[vs:ve]
		}
		seen.add(key, segmentIDKeys)
	})
	if seen.dup != "" {
		return "", fmt.Errorf(`%w: attributes["sentry.segment.id"] has a duplicate key %q`, ErrInvalidSpan, seen.dup)
	}
	return optionalID(`attributes["sentry.segment.id"].value`, value)
}

// The keys the buffer reads or rewrites, at the top of a span, in its attributes and
// in attributes["sentry.segment.id"]. A duplicate of one of these is rejected: the
// buffer reads and the flush edits the last copy and leaves the other as it was, so
// the span would come out with two answers and a reader downstream may take either.
// Duplicates of other keys are kept as they are, verbatim like the rest.
var (
	spanKeys = []string{"project_id", "trace_id", "span_id", "parent_span_id", "is_segment",
		"start_timestamp", "end_timestamp", "attributes"}
	attributeKeys = []string{"sentry.segment.id"}
	segmentIDKeys = []string{"value"}
)

// keySet records which of up to 8 watched keys an object has, and the first watched
// key it has twice.
type keySet struct {
	seen uint8
	dup  string
}

// add notes key if it is one of watched. A key written with escapes counts as the
// key it spells: JSON readers downstream unescape it, so "span\u005fid" next to
// "span_id" is a duplicate, although the buffer matches keys raw and reads only the
// latter.
func (k *keySet) add(key []byte, watched []string) {
	if k.dup != "" {
		return
	}
	name := string(key)
	if bytes.IndexByte(key, '\\') >= 0 {
		var unescaped string
		if json.Unmarshal([]byte(`"`+name+`"`), &unescaped) == nil {
			name = unescaped
		}
	}
	for i, w := range watched {
		if name == w {
			if k.seen&(1<<i) != 0 {
				k.dup = w
			}
			k.seen |= 1 << i
			return
		}
	}
}

func isNull(v []byte) bool { return v == nil || string(v) == "null" }

func orMissing(v []byte) string {
	if v == nil {
		return "(missing)"
	}
	return string(v)
}

func requiredID(field string, v []byte) (string, error) {
	if isNull(v) || string(v) == `""` {
		return "", fmt.Errorf("%w: %s is missing, null or empty", ErrInvalidSpan, field)
	}
	return optionalID(field, v)
}

// optionalID returns the id held by the JSON value v: a string, or null.
func optionalID(field string, v []byte) (string, error) {
	if isNull(v) {
		return "", nil
	}
	var id string
	if err := json.Unmarshal(v, &id); err != nil {
		return "", fmt.Errorf("%w: %s %s is not a string", ErrInvalidSpan, field, v)
	}
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
