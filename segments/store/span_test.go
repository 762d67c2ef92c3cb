package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	const ok = `"project_id":1,"trace_id":"` + traceA + `","span_id":"aaaaaaaaaaaaaaaa","start_timestamp":1.5,"end_timestamp":2`
	cases := []struct {
		name    string
		in      string
		want    Span
		invalid string // part of the error text; "" means valid
	}{
		{name: "minimal root", in: `{` + ok + `}`,
			want: Span{ProjectID: 1, TraceID: traceA, SpanID: id("a")}},
		{name: "child with segment id", in: `{` + ok + `,"parent_span_id":"bbbbbbbbbbbbbbbb","is_segment":false,"attributes":{"x":{"value":3},"sentry.segment.id":{"type":"string","value":"cccccccccccccccc"}}}`,
			want: Span{ProjectID: 1, TraceID: traceA, SpanID: id("a"), ParentSpanID: id("b"), SegmentID: id("c")}},
		{name: "null parent, null attributes", in: `{` + ok + `,"parent_span_id":null,"attributes":null,"is_segment":true}`,
			want: Span{ProjectID: 1, TraceID: traceA, SpanID: id("a"), IsSegment: true}},
		{name: "not JSON", in: `{"project_id":`, invalid: "unexpected end"},
		{name: "null", in: `null`, invalid: "not a JSON object"},
		{name: "array", in: `[1]`, invalid: "not a JSON object"},
		{name: "null trace", in: `{"project_id":1,"trace_id":null,"span_id":"aaaaaaaaaaaaaaaa","start_timestamp":1,"end_timestamp":2}`, invalid: "trace_id"},
		{name: "missing span", in: `{"project_id":1,"trace_id":"` + traceA + `","start_timestamp":1,"end_timestamp":2}`, invalid: "span_id"},
		{name: "string timestamp", in: `{` + strings.Replace(ok, `"end_timestamp":2`, `"end_timestamp":"1700000000.0"`, 1) + `}`, invalid: "end_timestamp"},
		{name: "missing timestamp", in: `{` + strings.Replace(ok, `,"end_timestamp":2`, ``, 1) + `}`, invalid: "end_timestamp"},
		{name: "project as string", in: `{` + strings.Replace(ok, `"project_id":1`, `"project_id":"1"`, 1) + `}`, invalid: "project_id"},
		{name: "negative project", in: `{` + strings.Replace(ok, `"project_id":1`, `"project_id":-1`, 1) + `}`, invalid: "project_id"},
		{name: "is_segment as string", in: `{` + ok + `,"is_segment":"yes"}`, invalid: "is_segment"},
		{name: "brace in trace id", in: `{` + strings.Replace(ok, traceA, "a}b", 1) + `}`, invalid: "trace_id"},
		{name: "is_segment twice", in: `{` + ok + `,"is_segment":true,"is_segment":false}`, invalid: `duplicate key "is_segment"`},
		{name: "attributes twice", in: `{` + ok + `,"attributes":{},"attributes":{"x":1}}`, invalid: `duplicate key "attributes"`},
		{name: "span_id twice", in: `{` + ok + `,"span_id":"bbbbbbbbbbbbbbbb"}`, invalid: `duplicate key "span_id"`},
		{name: "trace_id twice", in: `{` + ok + `,"trace_id":"` + traceA + `"}`, invalid: `duplicate key "trace_id"`},
		{name: "project_id twice", in: `{` + ok + `,"project_id":2}`, invalid: `duplicate key "project_id"`},
		{name: "parent_span_id twice", in: `{` + ok + `,"parent_span_id":null,"parent_span_id":"bbbbbbbbbbbbbbbb"}`, invalid: `duplicate key "parent_span_id"`},
		{name: "start_timestamp twice", in: `{` + ok + `,"start_timestamp":1}`, invalid: `duplicate key "start_timestamp"`},
		{name: "end_timestamp twice", in: `{"end_timestamp":3,` + ok + `}`, invalid: `duplicate key "end_timestamp"`},
		{name: "span_id twice, once escaped", in: `{` + ok + `,"span\u005fid":"bbbbbbbbbbbbbbbb"}`, invalid: `duplicate key "span_id"`},
		{name: "segment id twice", in: `{` + ok + `,"attributes":{"sentry.segment.id":{"value":"bbbbbbbbbbbbbbbb"},"sentry.segment.id":{"value":"cccccccccccccccc"}}}`,
			invalid: `attributes has a duplicate key "sentry.segment.id"`},
		{name: "segment id value twice", in: `{` + ok + `,"attributes":{"sentry.segment.id":{"value":"bbbbbbbbbbbbbbbb","value":"cccccccccccccccc"}}}`,
			invalid: `duplicate key "value"`},
		{name: "other keys twice are kept", in: `{` + ok + `,"name":"x","name":"y","attributes":{"db":{"value":1},"db":{"value":2},"sentry.segment.id":{"type":"string","type":"string","value":"cccccccccccccccc"}}}`,
			want: Span{ProjectID: 1, TraceID: traceA, SpanID: id("a"), SegmentID: id("c")}},
		{name: "escaped key alone is not read", in: `{` + ok + `,"is_s\u0065gment":"not read"}`,
			want: Span{ProjectID: 1, TraceID: traceA, SpanID: id("a")}},
		{name: "segment id of wrong type", in: `{` + ok + `,"attributes":{"sentry.segment.id":{"value":7}}}`, invalid: "value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in), 3)
			if strings.Contains(tc.invalid, "duplicate") && duplicateWatchedKey([]byte(tc.in)) == "" {
				t.Errorf("duplicateWatchedKey(%s), the fuzz test's check, finds no duplicate", tc.in)
			}
			if tc.invalid != "" {
				if !errors.Is(err, ErrInvalidSpan) || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("Decode(%s) = %v, want ErrInvalidSpan mentioning %q", tc.in, err, tc.invalid)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.in, err)
			}
			tc.want.Partition, tc.want.Payload = 3, []byte(tc.in)
			if got.ProjectID != tc.want.ProjectID || got.TraceID != tc.want.TraceID || got.SpanID != tc.want.SpanID ||
				got.ParentSpanID != tc.want.ParentSpanID || got.SegmentID != tc.want.SegmentID ||
				got.IsSegment != tc.want.IsSegment || got.Partition != 3 || string(got.Payload) != tc.in {
				t.Fatalf("Decode(%s) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`))
	f.Add([]byte(`{"project_id":1,"trace_id":null,"span_id":"a","start_timestamp":1,"end_timestamp":2,"attributes":null}`))
	f.Add([]byte(`{"project_id":1,"trace_id":"t","span_id":"s","parent_span_id":"p","start_timestamp":1,"end_timestamp":2,"attributes":{"sentry.segment.id":{"value":"x"}},"is_segment":true}`))
	f.Add([]byte(` null `))
	for _, in := range decodeEdgeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := Decode(in, 0)
		checkSameAsOld(t, in, s, err)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpan) {
				t.Fatalf("error %v does not wrap ErrInvalidSpan", err)
			}
			return
		}
		if s.TraceID == "" || s.SpanID == "" {
			t.Fatalf("accepted %q without trace and span ids", in)
		}
		if key := duplicateWatchedKey(in); key != "" {
			t.Fatalf("accepted %q with key %q twice", in, key)
		}
		// Every accepted span can be flushed, as it was before the output was written
		// into a buffer of the segment; as the root of its segment and as a child.
		for _, root := range []string{s.SpanID, "rrrrrrrrrrrrrrrr"} {
			out, id, err := outputSpan(s.Payload, root)
			if err != nil || id != s.SpanID {
				t.Fatalf("outputSpan(%q) = id %q, %v; want span id %q", in, id, err, s.SpanID)
			}
			if old, _, _ := oldOutputSpan(s.Payload, root); !bytes.Equal(out, old) {
				t.Fatalf("outputSpan(%q, %s) =\n  %s\nbefore\n  %s", in, root, out, old)
			}
		}
	})
}

// BenchmarkDecode decodes a typical span with Decode and with the decoder it replaced
// (validate, scan, then unmarshal each field), side by side.
func BenchmarkDecode(b *testing.B) {
	in := []byte(`{"project_id":12,"organization_id":1,"span_id":"aaaaaaaaaaaaaaaa","parent_span_id":"cccccccccccccccc","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0,"name":"db.query","attributes":{"sentry.segment.id":{"type":"string","value":"dddddddddddddddd"},"db.system":{"type":"string","value":"postgresql"},"sentry.op":{"type":"string","value":"db"}}}`)
	for _, d := range []struct {
		name   string
		decode func([]byte, int32) (Span, error)
	}{{"one-pass", Decode}, {"before", oldDecode}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.decode(in, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// duplicateWatchedKey returns a key the buffer reads or rewrites that the JSON object
// in has twice, at the top, in attributes or in attributes["sentry.segment.id"], as
// encoding/json's tokenizer (which unescapes keys) sees it; "" if there is none.
func duplicateWatchedKey(in []byte) string {
	obj := in
	for _, level := range []struct {
		watched []string
		next    string // the member holding the next level
	}{{spanKeys, "attributes"}, {attributeKeys, "sentry.segment.id"}, {segmentIDKeys, ""}} {
		members, dup := objectMembers(obj, level.watched)
		if dup != "" {
			return dup
		}
		if obj = members[level.next]; obj == nil {
			return ""
		}
	}
	return ""
}

// objectMembers returns the members of the JSON object obj (nil if it is none) and
// the first of watched it has twice.
func objectMembers(obj []byte, watched []string) (map[string][]byte, string) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, ""
	}
	members := make(map[string][]byte)
	dup := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, ""
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, ""
		}
		key := tok.(string)
		if _, twice := members[key]; twice && dup == "" && slices.Contains(watched, key) {
			dup = key
		}
		members[key] = v
	}
	return members, dup
}

// checkSameAsOld fails t unless Decode's answer for in, s and err, is the one the
// decoder before the one-pass scanner gave: the same span, or the same error.
func checkSameAsOld(t *testing.T, in []byte, s Span, err error) {
	t.Helper()
	want, wantErr := oldDecode(in, 0)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("Decode(%q) = %v, the old decoder %v", in, err, wantErr)
	case err != nil && err.Error() != wantErr.Error():
		t.Fatalf("Decode(%q) says\n  %v\nthe old decoder\n  %v", in, err, wantErr)
	case err == nil && (s.ProjectID != want.ProjectID || s.TraceID != want.TraceID || s.SpanID != want.SpanID ||
		s.ParentSpanID != want.ParentSpanID || s.SegmentID != want.SegmentID || s.IsSegment != want.IsSegment ||
		s.Partition != want.Partition || !bytes.Equal(s.Payload, want.Payload)):
		t.Fatalf("Decode(%q) = %+v, the old decoder %+v", in, s, want)
	}
}

// decodeEdgeCases are inputs at the edges of what Decode accepts: JSON grammar,
// nesting depth, number ranges, escapes, invalid UTF-8.
var decodeEdgeCases = func() []string {
	const ok = `"project_id":1,"trace_id":"` + traceA + `","span_id":"aaaaaaaaaaaaaaaa","start_timestamp":1.5,"end_timestamp":2`
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []string{
		``, ` `, `{`, `}`, `{}`, `[]`, `"x"`, `1`, `true`, `nul`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`,
		`{` + ok + `}x`, `{` + ok + `} `, "\t\r\n{" + ok + "}\n", `{` + ok + `}{}`,
		`{` + ok + `,"x":[1,2,]}`, `{` + ok + `,"x":[,1]}`, `{` + ok + `,"x":[1 2]}`, `{` + ok + `,"x":[[],{},[{}]]}`,
		`{` + ok + `,"x":01}`, `{` + ok + `,"x":-}`, `{` + ok + `,"x":1.}`, `{` + ok + `,"x":.5}`, `{` + ok + `,"x":1e}`,
		`{` + ok + `,"x":1e+}`, `{` + ok + `,"x":-0.0e-7}`, `{` + ok + `,"x":1E+07}`, `{` + ok + `,"x":+1}`,
		`{` + ok + `,"x":tru}`, `{` + ok + `,"x":truex}`, `{` + ok + `,"x":NaN}`,
		`{` + ok + `,"x":"\u00e9\ud83d\ude00"}`, `{` + ok + `,"x":"\u00g0"}`, `{` + ok + `,"x":"\x"}`, `{` + ok + `,"x":"\u12"}`,
		`{` + ok + `,"x":"a` + "\x01" + `"}`, `{` + ok + `,"x":"` + "\xff\xfe" + `"}`, `{` + ok + `,"x` + "\x7f" + `":1}`,
		`{` + ok + `,"x":` + nest(9999) + `}`, `{` + ok + `,"x":` + nest(10000) + `}`, nest(10000), nest(10001),
		`{"project_id":18446744073709551615,` + ok[len(`"project_id":1,`):] + `}`,
		`{"project_id":18446744073709551616,` + ok[len(`"project_id":1,`):] + `}`,
		`{"project_id":1.0,` + ok[len(`"project_id":1,`):] + `}`,
		`{"project_id":1e2,` + ok[len(`"project_id":1,`):] + `}`,
		`{"project_id":-0,` + ok[len(`"project_id":1,`):] + `}`,
		`{"project_id":true,` + ok[len(`"project_id":1,`):] + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":1e308`, 1) + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":1e309`, 1) + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":-1e-400`, 1) + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":`+strings.Repeat("9", 308), 1) + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":`+strings.Repeat("9", 309), 1) + `}`,
		`{` + strings.Replace(ok, `"start_timestamp":1.5`, `"start_timestamp":[]`, 1) + `}`,
		`{` + strings.Replace(ok, `"end_timestamp":2`, `"end_timestamp":null`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"\u0061aaaaaaaaaaaaaaa"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"a\/a"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"`+strings.Repeat("a", 64)+`"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"`+strings.Repeat("a", 65)+`"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"`+strings.Repeat(`\u0061`, 64)+`"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"a`+"\xff"+`"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":"é"`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":""`, 1) + `}`,
		`{` + strings.Replace(ok, `"span_id":"aaaaaaaaaaaaaaaa"`, `"span_id":7`, 1) + `}`,
		`{` + ok + `,"parent_span_id":""}`, `{` + ok + `,"parent_span_id":{}}`, `{` + ok + `,"is_segment":1}`,
		`{` + ok + `,"is_segment":null}`, `{` + ok + `,"Span_ID":"x"}`,
		`{` + ok + `,"attributes":[]}`, `{` + ok + `,"attributes":"x"}`, `{` + ok + `,"attributes":{"sentry.segment.id":null}}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":"x"}}`, `{` + ok + `,"attributes":{"sentry.segment.id":{"value":null}}}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":{"value":"b}c"}}}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":{"value":"x"},"sentry.segment\u002eid":{"value":"y"}}}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":{"value":"x","v\u0061lue":"y"}}}`,
		`{` + ok + `,"attributes":{"x":{"sentry.segment.id":{"value":"x"}}},"y":{"attributes":1}}`,
		`{` + ok + `,"attribut\u0065s":{"sentry.segment.id":{"value":"b}c"}}}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":{"value":"x","value":"y"}},"attributes":null}`,
		`{` + ok + `,"attributes":{"sentry.segment.id":{"value":"x"},"sentry.segment.id":null}}`,
	}
	return cases
}()

func TestDecodeAsBefore(t *testing.T) {
	for _, in := range decodeEdgeCases {
		s, err := Decode([]byte(in), 0)
		checkSameAsOld(t, []byte(in), s, err)
	}
}
