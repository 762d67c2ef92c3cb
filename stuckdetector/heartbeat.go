package stuckdetector

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// phaseBits is the part of Heartbeat.state that holds the phase.
const (
	phaseBits = 16
	phaseMask = 1<<phaseBits - 1
	// MaxPhases is how many distinct phase names a Heartbeat can tell apart.
	MaxPhases = phaseMask
)

// Heartbeat is what a loop updates on every iteration and a Watchdog reads. The zero
// value is ready to use. Tick, TickPhase and SetPhase may be called from one
// goroutine (the loop's) while any number of goroutines read; none of them allocates
// once a phase name has been seen.
//
// A tick is one atomic store and reads no clock, because loops come round millions
// of times a second; the watchdog times stalls with its own clock instead, to within
// its check interval.
type Heartbeat struct {
	// state holds the tick count above phaseBits and, below, the current phase as
	// its index in phases plus one (0 = none), so that a tick into a new phase is
	// one store. Only the loop writes it; the watchdog notes when the count changes.
	state atomic.Uint64

	// phases interns phase names, so that the state holds a small index. A loop
	// has a handful of phases, which a scan finds faster than a map lookup hashes
	// the name. It is replaced, never modified; internMu serialises additions.
	phases   atomic.Pointer[[]string]
	internMu sync.Mutex
}

// Tick records that the loop came round, without reading the clock.
func (h *Heartbeat) Tick() { h.state.Store(h.state.Load() + 1<<phaseBits) }

// TickPhase records that the loop came round and is now in phase name: Tick and
// SetPhase in one store.
func (h *Heartbeat) TickPhase(name string) {
	s := h.state.Load()
	h.state.Store((s>>phaseBits+1)<<phaseBits | h.index(name, s))
}

// SetPhase records which part of its work the loop is in ("poll", "submit", ...); a
// stall report names it. It panics beyond MaxPhases distinct names.
func (h *Heartbeat) SetPhase(name string) {
	s := h.state.Load()
	if i := h.index(name, s); i != s&phaseMask {
		h.state.Store(s&^phaseMask | i)
	}
}

// index returns name's index in phases plus one, interning it if it is new; s is
// the current state, whose phase is the likeliest answer.
func (h *Heartbeat) index(name string, s uint64) uint64 {
	if ps := h.phases.Load(); ps != nil {
		if cur := s & phaseMask; cur != 0 && (*ps)[cur-1] == name {
			return cur
		}
		for i, p := range *ps {
			if p == name {
				return uint64(i + 1)
			}
		}
	}
	return h.intern(name)
}

func (h *Heartbeat) intern(name string) uint64 {
	h.internMu.Lock()
	defer h.internMu.Unlock()
	var old []string
	if ps := h.phases.Load(); ps != nil {
		old = *ps
	}
	if i := slices.Index(old, name); i >= 0 {
		return uint64(i + 1)
	}
	if len(old) == MaxPhases {
		panic(fmt.Sprintf("stuckdetector: more than %d phase names; phase %q is one too many", MaxPhases, name))
	}
	next := append(slices.Clip(old), name)
	h.phases.Store(&next)
	return uint64(len(next))
}

// Phase returns the phase last set, or "" if none was.
func (h *Heartbeat) Phase() string {
	i := h.state.Load() & phaseMask
	ps := h.phases.Load()
	if i == 0 || ps == nil {
		return ""
	}
	return (*ps)[i-1]
}

// ticks returns the tick count.
func (h *Heartbeat) ticks() uint64 { return h.state.Load() >> phaseBits }
