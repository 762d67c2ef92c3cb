package store

import "testing"

func TestFlushedSegmentTraceParent(t *testing.T) {
	const (
		trace = "4bf92f3577b34da6a3ce929d0e0e4736"
		root  = "00f067aa0ba902b7"
	)
	cases := []struct {
		name        string
		trace, root string
		spans       []string
		want        string // "" for none
	}{
		{"root present", trace, root, []string{"aaaaaaaaaaaaaaaa", root}, "00-" + trace + "-" + root + "-01"},
		{"upper case ids are written in lower case", "4BF92F3577B34DA6A3CE929D0E0E4736", "00F067AA0BA902B7", []string{"00F067AA0BA902B7"}, "00-" + trace + "-" + root + "-01"},
		{"root missing (flushed without it, or detached)", trace, root, []string{"aaaaaaaaaaaaaaaa"}, ""},
		{"no spans", trace, root, nil, ""},
		{"trace id all zeros", "00000000000000000000000000000000", root, []string{root}, ""},
		{"span id all zeros", trace, "0000000000000000", []string{"0000000000000000"}, ""},
		{"trace id too short", trace[:31], root, []string{root}, ""},
		{"span id not hex", trace, "00f067aa0ba902bz", []string{"00f067aa0ba902bz"}, ""},
		{"span id of another form", trace, "root-span", []string{"root-span"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seg := FlushedSegment{TraceID: tc.trace, RootID: tc.root, spanIDs: tc.spans}
			got, ok := seg.TraceParent()
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("TraceParent() = %q, %v; want %q, %v", got, ok, tc.want, tc.want != "")
			}
		})
	}
}
