package metrics

import (
	"fmt"
	"testing"
)

func TestAppendKeyIdentifiesSeries(t *testing.T) {
	many := make([]Tag, 10)
	manyReversed := make([]Tag, 10)
	for i := range many {
		many[i] = Tag{fmt.Sprintf("k%d", i), "v"}
		manyReversed[9-i] = many[i]
	}
	tests := []struct {
		name string
		a, b []Tag
		same bool
	}{
		{"no tags", nil, []Tag{}, true},
		{"order does not matter", []Tag{{"a", "1"}, {"b", "2"}}, []Tag{{"b", "2"}, {"a", "1"}}, true},
		{"more tags than sorted on the stack", many, manyReversed, true},
		{"values differ", []Tag{{"a", "1"}}, []Tag{{"a", "2"}}, false},
		{"key and value boundary", []Tag{{"ab", "c"}}, []Tag{{"a", "bc"}}, false},
		{"tag against no tag", []Tag{{"a", ""}}, nil, false},
		{"repeated key keeps both", []Tag{{"a", "1"}, {"a", "2"}}, []Tag{{"a", "2"}, {"a", "1"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := string(appendKey(nil, kindCounter, "n", tt.a))
			b := string(appendKey(nil, kindCounter, "n", tt.b))
			if (a == b) != tt.same {
				t.Errorf("keys of %v and %v equal = %v, want %v", tt.a, tt.b, a == b, tt.same)
			}
		})
	}
}

func TestAppendKeySeparatesKindsAndNames(t *testing.T) {
	keys := map[string]string{}
	for _, c := range []struct {
		k    kind
		name string
		tags []Tag
	}{
		{kindCounter, "a", nil},
		{kindGauge, "a", nil},
		{kindTiming, "a", nil},
		{kindCounter, "ab", nil},
		{kindCounter, "a", []Tag{{"b", ""}}},
	} {
		key := string(appendKey(nil, c.k, c.name, c.tags))
		desc := fmt.Sprintf("%c %q %v", c.k, c.name, c.tags)
		if other, ok := keys[key]; ok {
			t.Errorf("%s and %s share a key", desc, other)
		}
		keys[key] = desc
	}
}
