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
// checked here are decoded; the rest is only validated as JSON, as strictly as
// encoding/json does.
//
// Ids must be 1 to 64 characters of [0-9A-Za-z_-]: they become part of Redis keys and
// hash tags, where '{', '}' or ':' would break the layout.
//
// The value is read once (see spanScanner); the span's ids share one allocation and
// Payload is value itself.
func Decode(value []byte, partition int32) (Span, error) {
	var sc spanScanner
	if !sc.scan(value) {
		var v any
		err := json.Unmarshal(value, &v) // only to say where the JSON breaks
		if err == nil {
			err = errors.New("rejected by the span scanner") // a test keeps the two in agreement
		}
		return Span{}, fmt.Errorf("%w: not JSON: %w", ErrInvalidSpan, err)
	}
	if !sc.object {
		return Span{}, fmt.Errorf("%w: not a JSON object", ErrInvalidSpan)
	}
	if sc.top.dup != "" {
		return Span{}, fmt.Errorf("%w: duplicate key %q", ErrInvalidSpan, sc.top.dup)
	}

	s := Span{Partition: partition, Payload: value}
	var ok bool
	switch {
	case isNull(sc.project):
		return Span{}, fmt.Errorf("%w: project_id is missing or null", ErrInvalidSpan)
	case !parseUint(sc.project, &s.ProjectID):
		return Span{}, fmt.Errorf("%w: project_id %s is not a non-negative integer", ErrInvalidSpan, sc.project)
	case isNull(sc.start) || !isFloat(sc.start):
		return Span{}, fmt.Errorf("%w: start_timestamp %s is not a number of seconds", ErrInvalidSpan, orMissing(sc.start))
	case isNull(sc.end) || !isFloat(sc.end):
		return Span{}, fmt.Errorf("%w: end_timestamp %s is not a number of seconds", ErrInvalidSpan, orMissing(sc.end))
	case !isNull(sc.isSegment):
		if s.IsSegment, ok = parseBool(sc.isSegment); !ok {
			return Span{}, fmt.Errorf("%w: is_segment %s is not a boolean", ErrInvalidSpan, sc.isSegment)
		}
	}
	var ids [4][]byte // trace, span, parent, segment
	var err error
	if ids[0], err = requiredID("trace_id", sc.trace); err != nil {
		return Span{}, err
	}
	if ids[1], err = requiredID("span_id", sc.spanID); err != nil {
		return Span{}, err
	}
	if ids[2], err = optionalID("parent_span_id", sc.parent); err != nil {
		return Span{}, err
	}
	if ids[3], err = sc.segmentID(); err != nil {
		return Span{}, err
	}
	// One string holds every id: a span costs one allocation beyond what the caller has.
	var buf [4 * maxIDLen]byte
	all := buf[:0]
	for _, id := range ids {
		all = append(all, id...)
	}
	str := string(all)
	field := [4]*string{&s.TraceID, &s.SpanID, &s.ParentSpanID, &s.SegmentID}
	for i, id := range ids {
		*field[i], str = str[:len(id)], str[len(id):]
	}
	return s, nil
}

// segmentID returns attributes["sentry.segment.id"].value, if there is one.
func (sc *spanScanner) segmentID() ([]byte, error) {
	if isNull(sc.attributes) {
		return nil, nil
	}
	if sc.attributes[0] != '{' {
		return nil, fmt.Errorf("%w: attributes is not an object", ErrInvalidSpan)
	}
	if sc.attrs.dup != "" {
		return nil, fmt.Errorf("%w: attributes has a duplicate key %q", ErrInvalidSpan, sc.attrs.dup)
	}
	if isNull(sc.segment) {
		return nil, nil
	}
	if sc.segment[0] != '{' {
		return nil, fmt.Errorf(`%w: attributes["sentry.segment.id"] is not an object`, ErrInvalidSpan)
	}
	if sc.seg.dup != "" {
		return nil, fmt.Errorf(`%w: attributes["sentry.segment.id"] has a duplicate key %q`, ErrInvalidSpan, sc.seg.dup)
	}
	return optionalID(`attributes["sentry.segment.id"].value`, sc.segValue)
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
	name := key
	if bytes.IndexByte(key, '\\') >= 0 {
		var unescaped string
		if json.Unmarshal([]byte(`"`+string(key)+`"`), &unescaped) == nil {
			name = []byte(unescaped)
		}
	}
	for i, w := range watched {
		if string(name) == w {
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

// maxIDLen is the longest id Decode accepts.
const maxIDLen = 64

func requiredID(field string, v []byte) ([]byte, error) {
	if isNull(v) || string(v) == `""` {
		return nil, fmt.Errorf("%w: %s is missing, null or empty", ErrInvalidSpan, field)
	}
	return optionalID(field, v)
}

// optionalID returns the id held by the JSON value v: a string, or null. An id
// written plainly is returned as a part of v; one with escapes (or one that is
// rejected, to name it as encoding/json reads it) goes through encoding/json.
func optionalID(field string, v []byte) ([]byte, error) {
	if isNull(v) {
		return nil, nil
	}
	if len(v) >= 2 && v[0] == '"' && len(v)-2 <= maxIDLen {
		if id := v[1 : len(v)-1]; plainID(id) {
			return id, nil
		}
	}
	var id string
	if err := json.Unmarshal(v, &id); err != nil {
		return nil, fmt.Errorf("%w: %s %s is not a string", ErrInvalidSpan, field, v)
	}
	if len(id) > maxIDLen {
		return nil, fmt.Errorf("%w: %s is longer than 64 characters", ErrInvalidSpan, field)
	}
	if !plainID([]byte(id)) {
		for i := 0; i < len(id); i++ {
			if !idChar(id[i]) {
				return nil, fmt.Errorf("%w: %s %q has a character other than [0-9A-Za-z_-]", ErrInvalidSpan, field, id)
			}
		}
	}
	return []byte(id), nil
}

// plainID reports whether every byte of id is one of [0-9A-Za-z_-].
func plainID(id []byte) bool {
	for _, c := range id {
		if !idChar(c) {
			return false
		}
	}
	return true
}

func idChar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_'
}
