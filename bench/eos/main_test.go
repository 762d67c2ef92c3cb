package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRunPrintsEveryContender runs a tiny benchmark on the in-process broker and
// checks the table has a row per mode and interval with a rate in it.
func TestRunPrintsEveryContender(t *testing.T) {
	cfg, err := parseFlags([]string{"-messages", "300", "-rounds", "1", "-live", "200ms", "-rate", "500", "-intervals", "50ms,100ms", "-timeout", "60s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{"| 50ms | at least once |", "| 50ms | transactions |", "| 100ms | at least once |", "| 100ms | transactions |"} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("the table has no row starting %q:\n%s", row, out.String())
		}
	}
}

func TestParseFlagsRefusesABadInterval(t *testing.T) {
	if _, err := parseFlags([]string{"-intervals", "1s,soon"}); err == nil || !strings.Contains(err.Error(), `"soon"`) {
		t.Fatalf("parseFlags = %v; want an error naming the bad interval", err)
	}
}
