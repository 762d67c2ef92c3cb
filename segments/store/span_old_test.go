package store

// The decoder as it was before Decode became one pass over the bytes (json.Valid, then
// a scan, then json.Unmarshal of each field): FuzzDecode checks that Decode accepts,
// rejects and reports exactly as it did.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

func oldDecode(value []byte, partition int32) (Span, error) {
	if !json.Valid(value) {
		var v any
		err := json.Unmarshal(value, &v) // only to say where the JSON breaks
		return Span{}, fmt.Errorf("%w: not JSON: %w", ErrInvalidSpan, err)
	}
	var project, trace, spanID, parent, isSegment, start, end, attrs []byte
	var seen oldKeySet
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
		seen.oldAdd(key, spanKeys)
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
	case oldIsNull(project):
		return Span{}, fmt.Errorf("%w: project_id is missing or null", ErrInvalidSpan)
	case json.Unmarshal(project, &s.ProjectID) != nil:
		return Span{}, fmt.Errorf("%w: project_id %s is not a non-negative integer", ErrInvalidSpan, project)
	case oldIsNull(start) || json.Unmarshal(start, &ts) != nil:
		return Span{}, fmt.Errorf("%w: start_timestamp %s is not a number of seconds", ErrInvalidSpan, oldOrMissing(start))
	case oldIsNull(end) || json.Unmarshal(end, &ts) != nil:
		return Span{}, fmt.Errorf("%w: end_timestamp %s is not a number of seconds", ErrInvalidSpan, oldOrMissing(end))
	case !oldIsNull(isSegment) && json.Unmarshal(isSegment, &s.IsSegment) != nil:
		return Span{}, fmt.Errorf("%w: is_segment %s is not a boolean", ErrInvalidSpan, isSegment)
	}
	if s.TraceID, err = oldRequiredID("trace_id", trace); err != nil {
		return Span{}, err
	}
	if s.SpanID, err = oldRequiredID("span_id", spanID); err != nil {
		return Span{}, err
	}
	if s.ParentSpanID, err = oldOptionalID("parent_span_id", parent); err != nil {
		return Span{}, err
	}
	if s.SegmentID, err = oldSegmentID(attrs); err != nil {
		return Span{}, err
	}
	return s, nil
}

// segmentID returns attributes["sentry.segment.id"].value, if there is one.
func oldSegmentID(attrs []byte) (string, error) {
	if oldIsNull(attrs) {
		return "", nil
	}
	if attrs[0] != '{' {
		return "", fmt.Errorf("%w: attributes is not an object", ErrInvalidSpan)
	}
	var seg, value []byte
	var seen oldKeySet
	_, _ = scanObject(attrs, 0, func(key []byte, vs, ve int) {
		if string(key) == "sentry.segment.id" {
			seg = attrs[vs:ve]
		}
		seen.oldAdd(key, attributeKeys)
	})
	if seen.dup != "" {
		return "", fmt.Errorf("%w: attributes has a duplicate key %q", ErrInvalidSpan, seen.dup)
	}
	if oldIsNull(seg) {
		return "", nil
	}
	if seg[0] != '{' {
		return "", fmt.Errorf(`%w: attributes["sentry.segment.id"] is not an object`, ErrInvalidSpan)
	}
	seen = oldKeySet{}
	_, _ = scanObject(seg, 0, func(key []byte, vs, ve int) {
		if string(key) == "value" {
			value = seg[vs:ve]
		}
		seen.oldAdd(key, segmentIDKeys)
	})
	if seen.dup != "" {
		return "", fmt.Errorf(`%w: attributes["sentry.segment.id"] has a duplicate key %q`, ErrInvalidSpan, seen.dup)
	}
	return oldOptionalID(`attributes["sentry.segment.id"].value`, value)
}

func (k *oldKeySet) oldAdd(key []byte, watched []string) {
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
func oldOrMissing(v []byte) string {
	if v == nil {
		return "(missing)"
	}
	return string(v)
}

func oldRequiredID(field string, v []byte) (string, error) {
	if oldIsNull(v) || string(v) == `""` {
		return "", fmt.Errorf("%w: %s is missing, null or empty", ErrInvalidSpan, field)
	}
	return oldOptionalID(field, v)
}

// optionalID returns the id held by the JSON value v: a string, or null.
func oldOptionalID(field string, v []byte) (string, error) {
	if oldIsNull(v) {
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

type oldKeySet struct {
	seen uint8
	dup  string
}

func oldIsNull(v []byte) bool { return v == nil || string(v) == "null" }

// oldOutputSpan is outputSpan as it was before it wrote into a buffer of the segment; it returns payload with the fields a flushed span carries: is_segment
// (span id == root) and attributes["sentry.segment.id"] unless it is already there.
// Everything else is kept byte for byte. It also returns the span id.
func oldOutputSpan(payload []byte, root string) (out []byte, spanID string, err error) {
	type field struct{ start, end int }
	var spanF, segF, attrF field
	var hasSpan, hasSeg, hasAttr bool
	n := 0
	end, err := scanObject(payload, 0, func(key []byte, vs, ve int) {
		n++
		switch string(key) {
		case "span_id":
			spanF, hasSpan = field{vs, ve}, true
		case "is_segment":
			segF, hasSeg = field{vs, ve}, true
		case "attributes":
			attrF, hasAttr = field{vs, ve}, true
		}
	})
	if err != nil {
		return nil, "", err
	}
	if hasSpan && payload[spanF.start] == '"' {
		spanID, _ = strconv.Unquote(string(payload[spanF.start:spanF.end]))
	}
	isSeg := "false"
	if spanID != "" && spanID == root {
		isSeg = "true"
	}
	segAttr := `"sentry.segment.id":{"type":"string","value":` + strconv.Quote(root) + `}`

	// edits are applied in order of position; each replaces payload[start:end].
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	if hasSeg {
		edits = append(edits, edit{segF.start, segF.end, isSeg})
	}
	switch {
	case !hasAttr:
	case payload[attrF.start] == 'n': // null
		edits = append(edits, edit{attrF.start, attrF.end, "{" + segAttr + "}"})
	case payload[attrF.start] == '{':
		found, fields := false, 0
		if _, err := scanObject(payload, attrF.start, func(key []byte, _, _ int) {
			fields++
			found = found || string(key) == "sentry.segment.id"
		}); err != nil {
			return nil, "", err
		}
		if !found {
			text := segAttr
			if fields > 0 {
				text += ","
			}
			edits = append(edits, edit{attrF.start + 1, attrF.start + 1, text})
		}
	}
	var tail bytes.Buffer
	sep := func() {
		if n > 0 || tail.Len() > 0 {
			tail.WriteByte(',')
		}
	}
	if !hasSeg {
		sep()
		tail.WriteString(`"is_segment":` + isSeg)
	}
	if !hasAttr {
		sep()
		tail.WriteString(`"attributes":{` + segAttr + `}`)
	}
	// The closing brace of the object is payload[end-1].
	edits = append(edits, edit{end - 1, end - 1, tail.String()})
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })

	out = make([]byte, 0, len(payload)+len(segAttr)+32)
	pos := 0
	for _, e := range edits {
		out = append(out, payload[pos:e.start]...)
		out = append(out, e.text...)
		pos = e.end
	}
	out = append(out, payload[pos:]...)
	return out, spanID, nil
}
