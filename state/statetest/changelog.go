// Package statetest provides an in-memory changelog for testing keyed state
// without a broker.
package statetest

import (
	"context"
	"fmt"
	"sync"

	"github.com/creekstream/creek/state"
)

// Changelog is an in-memory state.Changelog. It acknowledges every write at once
// unless Hold is set, when writes wait for Release. It is safe for concurrent use.
type Changelog struct {
	mu      sync.Mutex
	parts   map[int32][]state.Record
	hold    bool
	held    []heldWrite
	fail    error
	restore []Restore
}

// Restore is one Restore call: the partition and the offset it started from.
type Restore struct {
	Partition int32
	From      int64
}

type heldWrite struct {
	partition int32
	r         state.Record
	done      func(int64, error)
}

var _ state.Changelog = (*Changelog)(nil)

// NewChangelog returns an empty changelog.
func NewChangelog() *Changelog { return &Changelog{parts: map[int32][]state.Record{}} }

// Hold makes later writes wait for Release (hold true) or be acknowledged at once.
func (c *Changelog) Hold(hold bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = hold
}

// Fail makes later writes fail with err; nil lets them through again.
func (c *Changelog) Fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = err
}

// Held returns how many writes wait for Release.
func (c *Changelog) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// Release acknowledges the held writes, in order.
func (c *Changelog) Release() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	var acks []func()
	for _, w := range held {
		off := c.appendLocked(w.partition, w.r)
		done := w.done
		acks = append(acks, func() { done(off, nil) })
	}
	c.mu.Unlock()
	for _, ack := range acks {
		ack()
	}
}

// Append implements state.Changelog.
func (c *Changelog) Append(partition int32, r state.Record, done func(int64, error)) {
	c.mu.Lock()
	if c.fail != nil {
		err := c.fail
		c.mu.Unlock()
		done(0, fmt.Errorf("statetest: write failed: %w", err))
		return
	}
	r.Key, r.Value = append([]byte(nil), r.Key...), append([]byte(nil), r.Value...)
	if c.hold {
		c.held = append(c.held, heldWrite{partition, r, done})
		c.mu.Unlock()
		return
	}
	off := c.appendLocked(partition, r)
	c.mu.Unlock()
	done(off, nil)
}

func (c *Changelog) appendLocked(partition int32, r state.Record) int64 {
	r.Offset = int64(len(c.parts[partition]))
	c.parts[partition] = append(c.parts[partition], r)
	return r.Offset
}

// Restore implements state.Changelog.
func (c *Changelog) Restore(ctx context.Context, partition int32, from int64, apply func(state.Record) error) (int64, error) {
	c.mu.Lock()
	c.restore = append(c.restore, Restore{partition, from})
	recs := c.parts[partition]
	c.mu.Unlock()
	next := from
	for _, r := range recs[min(from, int64(len(recs))):] {
		if err := ctx.Err(); err != nil {
			return next, err
		}
		if err := apply(r); err != nil {
			return next, err
		}
		next = r.Offset + 1
	}
	return next, nil
}

// Records returns the records of partition, in order.
func (c *Changelog) Records(partition int32) []state.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]state.Record(nil), c.parts[partition]...)
}

// Restores returns the Restore calls made so far.
func (c *Changelog) Restores() []Restore {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Restore(nil), c.restore...)
}
