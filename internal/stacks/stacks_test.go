package stacks

import (
	"bytes"
	"sync"
	"testing"
)

func TestAll(t *testing.T) {
	parked := make(chan struct{})
	defer close(parked)
	var started sync.WaitGroup
	started.Add(1)
	go func() {
		parkedHere(parked, started.Done)
	}()
	started.Wait()
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

// parkedHere blocks with a name of its own on the stack for the tests to find; it
// calls entered first, so that a test knows the frame is on the stack.
//
//go:noinline
func parkedHere(c <-chan struct{}, entered func()) {
	entered()
	<-c
}

// TestAllGrows checks that a dump larger than the first buffer is not truncated:
// enough parked goroutines need more than the initial 64 KiB.
func TestAllGrows(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	var started sync.WaitGroup
	started.Add(2000)
	for range 2000 {
		go parkedHere(stop, started.Done)
	}
	started.Wait()
	dump := All()
	if len(dump) <= 64<<10 {
		t.Fatalf("dump is %d bytes; want more than the initial 64 KiB", len(dump))
	}
	if n := bytes.Count(dump, []byte("stacks.parkedHere")); n < 2000 {
		t.Errorf("dump shows %d parked goroutines, want at least 2000", n)
	}
}
