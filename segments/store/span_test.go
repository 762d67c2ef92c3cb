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
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := Decode(in, 0)
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
		// Every accepted span can be flushed.
		if _, id, err := outputSpan(s.Payload, s.SpanID); err != nil || id != s.SpanID {
			t.Fatalf("outputSpan(%q) = id %q, %v; want span id %q", in, id, err, s.SpanID)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	in := []byte(`{"project_id":12,"organization_id":1,"span_id":"aaaaaaaaaaaaaaaa","parent_span_id":"cccccccccccccccc","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0,"name":"db.query","attributes":{"sentry.segment.id":{"type":"string","value":"dddddddddddddddd"},"db.system":{"type":"string","value":"postgresql"},"sentry.op":{"type":"string","value":"db"}}}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in, 0); err != nil {
			b.Fatal(err)
		}
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
