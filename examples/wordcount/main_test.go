package main

import (
	"strings"
	"testing"
	"time"
)

// TestWordcountCountsExactlyThroughACrash runs the example and checks what it
// prints: a crash, replays skipped by the second counter, and exact counts.
func TestWordcountCountsExactlyThroughACrash(t *testing.T) {
	var out strings.Builder
	if err := run(options{lines: 500, crashAfter: 800, timeout: time.Minute}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"counter 1 crashed after 800 counted words", "check: OK: all"} {
		if !strings.Contains(s, want) {
			t.Fatalf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "skipped 0 already counted") {
		t.Fatalf("the second counter skipped no replayed word, so the crash showed nothing:\n%s", s)
	}
	t.Log("\n" + s)
}
