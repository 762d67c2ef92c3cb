package stacks

import (
	"bytes"
	"testing"
)

func TestAll(t *testing.T) {
	parked := make(chan struct{})
	defer close(parked)
	started := make(chan struct{})
	go func() {
		close(started)
		parkedHere(parked)
	}()
	<-started
	dump := All()
	tests := []struct {
		name, want string
	}{
		{"the calling goroutine", "stacks.TestAll"},
		{"another goroutine", "stacks.parkedHere"},
		{"goroutine headers", "goroutine "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(dump, []byte(tt.want)) {
				t.Errorf("dump has no %q:\n%s", tt.want, dump)
			}
		})
	}
}

// parkedHere blocks with a name of its own on the stack for TestAll to find.
//
//go:noinline
func parkedHere(c <-chan struct{}) { <-c }

// TestAllGrows checks that a dump larger than the first buffer is not truncated:
// enough parked goroutines need more than the initial 64 KiB.
func TestAllGrows(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	for range 2000 {
		go parkedHere(stop)
	}
	dump := All()
	if len(dump) <= 64<<10 {
		t.Fatalf("dump is %d bytes; want more than the initial 64 KiB", len(dump))
	}
	if n := bytes.Count(dump, []byte("stacks.parkedHere")); n < 2000 {
		t.Errorf("dump shows %d parked goroutines, want at least 2000", n)
	}
}
