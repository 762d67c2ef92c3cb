package stuckdetector

import "testing"

func TestHeartbeatPhase(t *testing.T) {
	var hb Heartbeat
	if got := hb.Phase(); got != "" {
		t.Errorf("Phase() of a new heartbeat = %q, want empty", got)
	}
	for _, p := range []string{"poll", "submit", "poll", "commit"} {
		hb.SetPhase(p)
		if got := hb.Phase(); got != p {
			t.Errorf("Phase() = %q after SetPhase(%q)", got, p)
		}
	}
}

func TestHeartbeatTicksKeepThePhase(t *testing.T) {
	var hb Heartbeat
	steps := []struct {
		do        func()
		wantPhase string
		wantTicks uint64
	}{
		{func() { hb.Tick() }, "", 1},
		{func() { hb.TickPhase("poll") }, "poll", 2},
		{func() { hb.SetPhase("submit") }, "submit", 2},
		{func() { hb.Tick() }, "submit", 3},
		{func() { hb.TickPhase("poll") }, "poll", 4},
		{func() { hb.TickPhase("poll") }, "poll", 5},
	}
	for i, s := range steps {
		s.do()
		if got := hb.Phase(); got != s.wantPhase {
			t.Errorf("step %d: Phase() = %q, want %q", i, got, s.wantPhase)
		}
		if got := hb.ticks(); got != s.wantTicks {
			t.Errorf("step %d: %d ticks, want %d", i, got, s.wantTicks)
		}
	}
}

func TestHeartbeatDoesNotAllocate(t *testing.T) {
	var hb Heartbeat
	phases := []string{"poll", "strategy poll", "submit", "commit"}
	i := 0
	loop := func() {
		hb.SetPhase(phases[i%len(phases)])
		hb.Tick()
		hb.TickPhase(phases[(i+1)%len(phases)])
		i++
	}
	for range phases {
		loop()
	}
	if n := testing.AllocsPerRun(1000, loop); n != 0 {
		t.Errorf("Tick, TickPhase and SetPhase allocate %v times per iteration, want 0", n)
	}
}

// BenchmarkHeartbeat measures what the loop pays per iteration.
func BenchmarkHeartbeat(b *testing.B) {
	var hb Heartbeat
	phases := []string{"poll", "submit"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		hb.SetPhase(phases[i&1])
		hb.Tick()
		i++
	}
}
