package cpustat

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestReadsGrowWithWork burns some CPU and checks that this process's time, read
// both ways, and the machine's busy time grow, and that the load average parses.
func TestReadsGrowWithWork(t *testing.T) {
	self0, proc0, machine0 := Self(t), Process(t, os.Getpid()), Machine(t)
	// A clock tick is 10 ms; 100 ms of work moves every reading.
	x := 0
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	for _, c := range []struct {
		name          string
		before, after time.Duration
	}{{"Self", self0, Self(t)}, {"Process", proc0, Process(t, os.Getpid())}, {"Machine", machine0, Machine(t)}} {
		if c.after <= c.before {
			t.Errorf("%s went from %v to %v over 100 ms of work (%d loops)", c.name, c.before, c.after, x)
		}
	}
	if load := LoadAvg(t); len(strings.Fields(load)) != 3 {
		t.Errorf("LoadAvg = %q, want three figures", load)
	}
}

func TestProcessOfNoProcess(t *testing.T) {
	if _, err := process(1 << 30); err == nil || !strings.Contains(err.Error(), "process 1073741824") {
		t.Fatalf("the CPU time of a pid that does not exist = %v, want an error naming it", err)
	}
}
