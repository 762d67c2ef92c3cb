package chaos

import "testing"

// TestAccounting checks the suite's bookkeeping on a made-up run: it needs no
// broker, so it runs with every go test.
func TestAccounting(t *testing.T) {
	input := map[[2]int64]string{{0, 0}: "id-0", {0, 1}: "id-1", {0, 2}: "id-2", {1, 0}: "id-3"}
	lines := []processing{
		{partition: 0, offset: 0, value: "id-0", at: 10, proc: 0},
		{partition: 0, offset: 1, value: "id-1", at: 11, proc: 0},
		// Killed before committing offset 1: the successor processes it again.
		{partition: 0, offset: 1, value: "id-1", at: 30, proc: 1},
		// Offset 0 was committed past (sample at 20), so this re-read is a rewind.
		{partition: 0, offset: 0, value: "id-0", at: 31, proc: 1},
		{partition: 1, offset: 0, value: "id-9", at: 12, proc: 0},
	}
	commits := []commitSample{{at: 5, committed: map[int32]int64{}}, {at: 20, committed: map[int32]int64{0: 1}}}
	a := tallyUp(input, lines, commits)
	want := accounting{in: 4, out: 3, lost: 1, duplicates: 2, rewound: 1, wrong: 1}
	if a != want {
		t.Fatalf("tallyUp = %+v, want %+v", a, want)
	}
	if n := inFlight(lines, 0, map[int32]int64{0: 1}); n != 2 {
		t.Errorf("inFlight of process 0 past offset 1 of partition 0 = %d, want 2 (offset 1 and partition 1's offset 0)", n)
	}
}

// TestSpanAccounting checks the span buffer cases' bookkeeping on a made-up output.
func TestSpanAccounting(t *testing.T) {
	ts := traceSet{segment: map[string]string{"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "f": "d"}}
	r := &segmentReader{bad: 1, seen: map[string][]string{
		"a": {"a"},
		"b": {"a", "a"}, // a duplicate in its own segment
		"c": {"a", "b"}, // a stray copy in a fragment under b
		"d": {"d"},      // e lost
		"f": {"e"},      // misplaced: no copy in its own segment
		"x": {"x"},      // another deployment's
	}}
	want := spanAccounting{in: 6, out: 5, lost: 1, duplicates: 2, misplaced: 1, stray: 1, foreign: 1, bad: 1,
		example:      "span f belongs to segment d but came out under [e]",
		strayExample: "span c belongs to segment a but came out under [a b]"}
	if got := r.account(ts); got != want {
		t.Fatalf("account = %+v, want %+v", got, want)
	}
}
