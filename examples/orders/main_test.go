package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestDemo runs the service end to end on the in-process broker, as `go run
// ./examples/orders` does: every valid order comes out once, enriched, in batches
// of at most 100; the unparseable ones reach the dead-letter topic with their
// origin headers; /metrics and /healthz answer 200; and after a real SIGTERM every
// input offset is committed. demo checks all of it and says "check: OK".
func TestDemo(t *testing.T) {
	var out strings.Builder
	if err := run(options{listen: "127.0.0.1:0", orders: 300, invalid: 3}, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"out: 300 orders, 300 distinct, enriched, in ",
		"dead-letter topic: 3 messages",
		"from orders/",
		"GET /metrics: 200",
		"GET /healthz: 200",
		"after SIGTERM: committed 303 of 303 input offsets",
		"check: OK",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestServiceIsSmall keeps the service within the size a team can read at once:
// service.go, without blank and comment lines, is at most 70 lines.
func TestServiceIsSmall(t *testing.T) {
	f, err := os.Open("service.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if line := strings.TrimSpace(s.Text()); line != "" && !strings.HasPrefix(line, "//") {
			n++
		}
	}
	if n > 70 {
		t.Errorf("service.go has %d lines of code, want at most 70", n)
	}
}
