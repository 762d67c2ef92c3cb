package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
)

// outputSpan returns payload with the fields a flushed span carries (see
// appendOutputSpan), and its span id.
func outputSpan(payload []byte, root string) (out []byte, spanID string, err error) {
	out, id, err := appendOutputSpan(nil, payload, root, segmentAttribute(root))
	return out, id, err
}

// segmentAttribute is the attribute every span of the segment rooted at root
// carries: "sentry.segment.id":{"type":"string","value":"<root>"}.
func segmentAttribute(root string) string {
	return `"sentry.segment.id":{"type":"string","value":` + strconv.Quote(root) + `}`
}

// outputSpanExtra bounds what appendOutputSpan adds to a payload besides the
// segment attribute.
const outputSpanExtra = len(`,"is_segment":false,"attributes":{}`) + 1

// appendOutputSpan appends to dst payload with the fields a flushed span carries:
// is_segment (span id == root) and segAttr (segmentAttribute(root)) in its
// attributes unless it already has a sentry.segment.id. Everything else is kept
// byte for byte. It also returns the span id, "" if there is none.
func appendOutputSpan(dst, payload []byte, root, segAttr string) (out []byte, spanID string, err error) {
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
		return dst, "", err
	}
	if hasSpan && payload[spanF.start] == '"' {
		raw := payload[spanF.start+1 : spanF.end-1]
		if bytes.IndexByte(raw, '\\') < 0 {
			if string(raw) == root {
				spanID = root // no copy for the root's own id
			} else {
				spanID = string(raw)
			}
		} else {
			spanID, _ = strconv.Unquote(string(payload[spanF.start:spanF.end]))
		}
	}
	isSeg := "false"
	if spanID != "" && spanID == root {
		isSeg = "true"
	}

	// At most two edits inside the object, each replacing payload[start:end], and
	// what is added before the closing brace.
	type edit struct {
		start, end int
		text, wrap string // text, within { and } when wrap is "{"
	}
	var edits [2]edit
	ne := 0
	if hasSeg {
		edits[ne] = edit{start: segF.start, end: segF.end, text: isSeg}
		ne++
	}
	switch {
	case !hasAttr:
	case payload[attrF.start] == 'n': // null
		edits[ne] = edit{start: attrF.start, end: attrF.end, text: segAttr, wrap: "{"}
		ne++
	case payload[attrF.start] == '{':
		found, fields := false, 0
		if _, err := scanObject(payload, attrF.start, func(key []byte, _, _ int) {
			fields++
			found = found || string(key) == "sentry.segment.id"
		}); err != nil {
			return dst, "", err
		}
		if !found {
			e := edit{start: attrF.start + 1, end: attrF.start + 1, text: segAttr}
			if fields > 0 {
				e.wrap = ","
			}
			edits[ne] = e
			ne++
		}
	}
	if ne == 2 && edits[1].start < edits[0].start {
		edits[0], edits[1] = edits[1], edits[0]
	}

	out = slices.Grow(dst, len(payload)+len(segAttr)+outputSpanExtra)
	pos := 0
	for _, e := range edits[:ne] {
		out = append(out, payload[pos:e.start]...)
		switch e.wrap {
		case "{":
			out = append(out, '{')
			out = append(out, e.text...)
			out = append(out, '}')
		case ",":
			out = append(out, e.text...)
			out = append(out, ',')
		default:
			out = append(out, e.text...)
		}
		pos = e.end
	}
	// The closing brace of the object is payload[end-1].
	out = append(out, payload[pos:end-1]...)
	if !hasSeg {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, `"is_segment":`...)
		out = append(out, isSeg...)
	}
	if !hasAttr {
		if n > 0 || !hasSeg {
			out = append(out, ',')
		}
		out = append(out, `"attributes":{`...)
		out = append(out, segAttr...)
		out = append(out, '}')
	}
	out = append(out, payload[end-1:]...)
	return out, spanID, nil
}

// Messages returns the Kafka messages for seg: {"flush_id": ..., "spans": [...]}, one
// per emission, each with a fresh 32-hex flush id. A segment larger than
// MaxSegmentBytes is split greedily, keeping span order, into messages of at most
// that size, each marked "skip_enrichment": true; a span that alone exceeds the limit
// gets a message of its own.
func (b *Buffer) Messages(seg FlushedSegment) ([][]byte, error) {
	return messages(seg.Spans, b.cfg.MaxSegmentBytes)
}

// Envelope sizes: {"flush_id":"<32>","spans":[ ... ]} and ],"skip_enrichment":true}.
const (
	msgHead      = `{"flush_id":"`
	msgSpans     = `","spans":[`
	msgEnd       = `]}`
	msgEndSkip   = `],"skip_enrichment":true}`
	msgFixedSize = len(msgHead) + 32 + len(msgSpans)
)

func messages(spans [][]byte, limit int) ([][]byte, error) {
	if len(spans) == 0 {
		return nil, errors.New("store: a segment without spans has no messages")
	}
	total := msgFixedSize + len(msgEnd) + len(spans) - 1
	for _, s := range spans {
		total += len(s)
	}
	if total <= limit {
		return [][]byte{message(spans, total, false)}, nil
	}
	var out [][]byte
	first, size := 0, msgFixedSize+len(msgEndSkip)
	for i, s := range spans {
		add := len(s)
		if i > first {
			add++ // comma
		}
		if i > first && size+add > limit {
			out = append(out, message(spans[first:i], size, true))
			first, size, add = i, msgFixedSize+len(msgEndSkip), len(s)
		}
		size += add
	}
	out = append(out, message(spans[first:], size, true))
	return out, nil
}

func message(spans [][]byte, size int, skip bool) []byte {
	var id [16]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	m := make([]byte, 0, size)
	m = append(m, msgHead...)
	m = hex.AppendEncode(m, id[:])
	m = append(m, msgSpans...)
	for i, s := range spans {
		if i > 0 {
			m = append(m, ',')
		}
		m = append(m, s...)
	}
	if skip {
		return append(m, msgEndSkip...)
	}
	return append(m, msgEnd...)
}
