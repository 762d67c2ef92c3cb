package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
)

// outputSpan returns payload with the fields a flushed span carries: is_segment
// (span id == root) and attributes["sentry.segment.id"] unless it is already there.
// Everything else is kept byte for byte. It also returns the span id.
func outputSpan(payload []byte, root string) (out []byte, spanID string, err error) {
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
