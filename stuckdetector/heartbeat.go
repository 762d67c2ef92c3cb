package stuckdetector

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// epoch anchors heartbeat times so that they are stored as monotonic offsets: a wall
// clock step (NTP) must neither fake a stall nor hide one.
var epoch = time.Now()

// Heartbeat is what a loop updates on every iteration and a Watchdog reads. The zero
// value is ready to use. Tick, Beat, BeatAt and SetPhase may be called from one
// goroutine (the loop's) while any number of goroutines read; none of them allocates
// once a phase name has been seen.
//
// A loop either ticks or beats. Tick is an atomic add and reads no clock, for loops
// that come round millions of times a second; the watchdog then times stalls with
// its own clock, to within its check interval. Beat and BeatAt record the time, so
// that stalls are timed exactly.
type Heartbeat struct {
	// ticks counts Tick calls; the watchdog notes when it sees the count change.
	ticks atomic.Uint64
	// last is the time of the latest beat, in nanoseconds since epoch; 0 = never.
	last atomic.Int64
	// maxGap is the longest time between two beats since the watchdog last read it;
	// it lets the watchdog report how long a stall really lasted.
	maxGap atomic.Int64
	phase  atomic.Pointer[string]

	// phases interns phase names so that SetPhase stores a pointer it already has
	// instead of allocating one. A loop has a handful of phases, which a scan finds
	// faster than a map lookup hashes the name. It is replaced, never modified;
	// internMu serialises additions.
	phases   atomic.Pointer[[]*string]
	internMu sync.Mutex
}

// Tick records that the loop came round, without reading the clock.
func (h *Heartbeat) Tick() { h.ticks.Add(1) }

// Beat records that the loop came round now.
func (h *Heartbeat) Beat() { h.BeatAt(time.Now()) }

// BeatAt records that the loop came round at t; loops that run on an injected clock
// use it with the same clock as the watchdog's Config.Now.
func (h *Heartbeat) BeatAt(t time.Time) {
	now := int64(t.Sub(epoch))
	prev := h.last.Swap(now)
	if prev == 0 {
		return
	}
	gap := now - prev
	for {
		m := h.maxGap.Load()
		if gap <= m || h.maxGap.CompareAndSwap(m, gap) {
			return
		}
	}
}

// SetPhase records which part of its work the loop is in ("poll", "submit", ...); a
// stall report names it.
func (h *Heartbeat) SetPhase(name string) {
	if p := h.phase.Load(); p != nil && *p == name {
		return
	}
	if ps := h.phases.Load(); ps != nil {
		for _, p := range *ps {
			if *p == name {
				h.phase.Store(p)
				return
			}
		}
	}
	h.phase.Store(h.intern(name))
}

func (h *Heartbeat) intern(name string) *string {
	h.internMu.Lock()
	defer h.internMu.Unlock()
	var old []*string
	if ps := h.phases.Load(); ps != nil {
		old = *ps
	}
	for _, p := range old {
		if *p == name {
			return p
		}
	}
	p := &name
	next := append(slices.Clip(old), p)
	h.phases.Store(&next)
	return p
}

// Phase returns the phase last set, or "" if none was.
func (h *Heartbeat) Phase() string {
	if p := h.phase.Load(); p != nil {
		return *p
	}
	return ""
}

// lastBeat returns the time of the latest beat as an offset from epoch, and whether
// there was one.
func (h *Heartbeat) lastBeat() (time.Duration, bool) {
	n := h.last.Load()
	return time.Duration(n), n != 0
}

// takeMaxGap returns the longest gap between beats since the previous call.
func (h *Heartbeat) takeMaxGap() time.Duration {
	return time.Duration(h.maxGap.Swap(0))
}
