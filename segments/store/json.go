package store

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// errNotObject is returned for a payload that is not a JSON object; Decode rejects
// those, so meeting one at flush means Redis held something else.
var errNotObject = errors.New("store: payload is not a JSON object")

// scanObject walks the members of the JSON object starting at b[i] (after
// whitespace), calling fn with each raw key and the bounds of its value, and returns
// the index just past the closing brace. Keys are compared raw: a key written with
// escapes is not recognised.
func scanObject(b []byte, i int, fn func(key []byte, vs, ve int)) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return 0, errNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return 0, errNotObject
		}
		ke, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, errNotObject
		}
		vs := skipSpace(b, i+1)
		ve, err := skipValue(b, vs)
		if err != nil {
			return 0, err
		}
		fn(key, vs, ve)
		i = skipSpace(b, ve)
		if i >= len(b) {
			break
		}
		switch b[i] {
		case '}':
			return i + 1, nil
		case ',':
			i = skipSpace(b, i+1)
		default:
			return 0, errNotObject
		}
	}
	return 0, errNotObject
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errNotObject
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errNotObject
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errNotObject
	default:
		j := i
		for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[j])) {
			j++
		}
		if j == i {
			return 0, errNotObject
		}
		return j, nil
	}
}

// maxDepth is how deeply arrays and objects may nest: encoding/json's limit, so that
// Decode rejects exactly what encoding/json rejects.
const maxDepth = 10000

// Where a member's value sits, for spanScanner: the span object, its attributes, or
// attributes["sentry.segment.id"]. Other values are only validated.
type level uint8

const (
	levelOther level = iota
	levelSpan
	levelAttributes
	levelSegmentID
)

// spanScanner validates a JSON document in one pass, with encoding/json's grammar
// and limits, and on the way keeps the values of the members Decode reads. Values
// are parts of the document; nothing is copied.
type spanScanner struct {
	b     []byte
	depth int

	// object is whether the document is an object.
	object bool
	// The watched keys met at each level, and which appeared twice.
	top, attrs, seg keySet
	// The raw values of the keys matched exactly; nil where missing.
	project, trace, spanID, parent, isSegment, start, end, attributes []byte
	segment, segValue                                                 []byte
}

// scan reports whether b is one valid JSON document.
func (s *spanScanner) scan(b []byte) bool {
	s.b = b
	i := skipSpace(b, 0)
	lv := levelOther
	if i < len(b) && b[i] == '{' {
		s.object, lv = true, levelSpan
	}
	i, ok := s.value(i, lv)
	return ok && skipSpace(b, i) == len(b)
}

// value checks the value at b[i], an object at lv if it is one, and returns the
// index just past it.
func (s *spanScanner) value(i int, lv level) (int, bool) {
	b := s.b
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return s.str(i)
	case c == '{':
		return s.obj(i, lv)
	case c == '[':
		return s.array(i)
	case c == '-' || '0' <= c && c <= '9':
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return i, false
}

func (s *spanScanner) obj(i int, lv level) (int, bool) {
	if s.depth++; s.depth > maxDepth {
		return i, false
	}
	b := s.b
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		s.depth--
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		ke, ok := s.str(i)
		if !ok {
			return ke, false
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		vs := skipSpace(b, i+1)
		child := levelOther
		if lv != levelOther {
			child = s.enter(lv, key)
		}
		ve, ok := s.value(vs, child)
		if !ok {
			return ve, false
		}
		if lv != levelOther {
			s.member(lv, key, b[vs:ve])
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			s.depth--
			return i + 1, true
		default:
			return i, false
		}
	}
}

// enter returns the level of the value of key, a member of an object at lv, and
// forgets what an earlier value at that level held: only the last one is read.
func (s *spanScanner) enter(lv level, key []byte) level {
	switch {
	case lv == levelSpan && string(key) == "attributes":
		s.attrs, s.segment, s.seg, s.segValue = keySet{}, nil, keySet{}, nil
		return levelAttributes
	case lv == levelAttributes && string(key) == "sentry.segment.id":
		s.seg, s.segValue = keySet{}, nil
		return levelSegmentID
	}
	return levelOther
}

// member notes the member key: v of an object at lv.
func (s *spanScanner) member(lv level, key, v []byte) {
	switch lv {
	case levelSpan:
		switch string(key) {
		case "project_id":
			s.project = v
		case "trace_id":
			s.trace = v
		case "span_id":
			s.spanID = v
		case "parent_span_id":
			s.parent = v
		case "is_segment":
			s.isSegment = v
		case "start_timestamp":
			s.start = v
		case "end_timestamp":
			s.end = v
		case "attributes":
			s.attributes = v
		}
		s.top.add(key, spanKeys)
	case levelAttributes:
		if string(key) == "sentry.segment.id" {
			s.segment = v
		}
		s.attrs.add(key, attributeKeys)
	case levelSegmentID:
		if string(key) == "value" {
			s.segValue = v
		}
		s.seg.add(key, segmentIDKeys)
	}
}

func (s *spanScanner) array(i int) (int, bool) {
	if s.depth++; s.depth > maxDepth {
		return i, false
	}
	b := s.b
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		s.depth--
		return i + 1, true
	}
	for {
		e, ok := s.value(i, levelOther)
		if !ok {
			return e, false
		}
		i = skipSpace(b, e)
		if i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			s.depth--
			return i + 1, true
		default:
			return i, false
		}
	}
}

// str checks the string starting at b[i] and returns the index just past it. Like
// encoding/json it rejects control characters and unknown escapes, and lets invalid
// UTF-8 through.
func (s *spanScanner) str(i int) (int, bool) {
	b := s.b
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return j, false
		case c == '\\':
			j++
			if j >= len(b) {
				return j, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return j, false
				}
				for _, h := range b[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return j, false
					}
				}
				j += 4
			default:
				return j, false
			}
		}
	}
	return len(b), false
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func (s *spanScanner) number(i int) (int, bool) {
	b := s.b
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func (s *spanScanner) literal(i int, lit string) (int, bool) {
	if len(s.b)-i >= len(lit) && string(s.b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

// parseUint reads the JSON number v into *n as encoding/json reads it into a
// uint64: digits only, within range.
func parseUint(v []byte, n *uint64) bool {
	if len(v) == 0 {
		return false
	}
	var x uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
		d := uint64(c - '0')
		if x > (math.MaxUint64-d)/10 {
			return false
		}
		x = x*10 + d
	}
	*n = x
	return true
}

// isFloat reports whether v is a JSON number that encoding/json reads into a
// float64: any number short of overflowing it. One without an exponent and under
// 300 characters cannot overflow, which spares the common case the parse.
func isFloat(v []byte) bool {
	if len(v) == 0 || v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return false
	}
	if len(v) < 300 && !bytes.ContainsAny(v, "eE") {
		return true
	}
	_, err := strconv.ParseFloat(string(v), 64)
	return err == nil
}

// parseBool reads the JSON literal true or false.
func parseBool(v []byte) (value, ok bool) {
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
