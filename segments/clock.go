package segments

import (
	"sync"
	"time"
)

// kafkaClock is the span buffer's time, kept per shard (Kafka partition). Partitions are
// consumed at different rates, so one clock for all of them would flush a lagging
// partition's segments at a leading partition's time, before the lagging one's late
// spans are read.
//
// A shard's clock is the Kafka time of its last ingested batch, moving on with the
// wall clock from then (so that segments flush when traffic stops), but never past
// the oldest span of that shard that has been read but not yet ingested: while the
// consumer holds such a span (in a batch that waits for its size or time limit, say),
// a segment it belongs to must not be flushed without it.
//
// A shard nothing has been read on yet (just assigned) has no time: nothing on it is
// due. Its queue may hold a previous owner's fragments, whose spans are read again
// from the committed offset; flushing them first would emit the fragments as
// segments of their own. Its clock starts at the Kafka time of the first span read
// on it. Only a shard on which nothing at all is read for grace (the segment
// timeout) after it was first asked about falls back to the slowest known shard's
// time, so that fragments on a partition without traffic still flush.
//
// The Factory makes one per chain and hands it to each step that moves it: decode
// holds each span read (hold), ingest releases the spans once they are in Redis
// (ingested), the flusher lifts the hold while it rejects (setUncapped); the
// flusher's workers read it through store.Clock (Now). The first three run on the
// processor's loop goroutine, the workers on their own; mu guards everything.
type kafkaClock struct {
	mu sync.Mutex
	// base is the drift setDrift gave every shard: Kafka time minus wall time.
	// Tests move time with it, as the span buffer's contract has them do.
	base   time.Duration
	shards map[int32]*shardTime
	// uncapped lifts the hold of pending spans: set while the flusher rejects
	// messages, since the pending spans then wait for the flusher itself.
	uncapped bool
	// grace is how long a shard nothing was read on keeps no time; 0 falls back at
	// once.
	grace time.Duration
	// forced says setDrift set every shard's time, read or not.
	forced bool
}

type shardTime struct {
	// drift is the shard's Kafka time minus wall time at its last ingest.
	drift time.Duration
	known bool
	// pending holds the Kafka timestamps of the spans read and not yet ingested, in
	// the order they were read; oldest is their minimum (timestamps set by
	// producers need not grow with offsets).
	pending []time.Time
	oldest  time.Time
	// since is when the shard's time was first asked for while nothing had been
	// read on it: about when it was assigned.
	since time.Time
}

func newKafkaClock(grace time.Duration) *kafkaClock {
	return &kafkaClock{shards: make(map[int32]*shardTime), grace: grace}
}

func (c *kafkaClock) shard(s int32) *shardTime {
	st, ok := c.shards[s]
	if !ok {
		st = &shardTime{}
		c.shards[s] = st
	}
	return st
}

// hold records a span of shard read at Kafka time ts that is on its way to ingest.
func (c *kafkaClock) hold(shard int32, ts time.Time) {
	c.mu.Lock()
	st := c.shard(shard)
	if len(st.pending) == 0 || ts.Before(st.oldest) {
		st.oldest = ts
	}
	st.pending = append(st.pending, ts)
	c.mu.Unlock()
}

// ingested records that the n spans of shard read first are in Redis now, and that
// the shard's Kafka time is at (the smallest timestamp among them).
func (c *kafkaClock) ingested(shard int32, n int, at time.Time, wall time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.shard(shard)
	st.drift, st.known = at.Sub(wall), true
	n = min(n, len(st.pending))
	if n == 0 {
		return
	}
	st.pending = st.pending[n:]
	if len(st.pending) == 0 {
		// Start over at the front of the array instead of growing it for ever.
		st.pending = st.pending[:0:0]
		return
	}
	st.oldest = st.pending[0]
	for _, ts := range st.pending[1:] {
		if ts.Before(st.oldest) {
			st.oldest = ts
		}
	}
}

// setDrift moves every shard's clock, read or not, to wall + d.
func (c *kafkaClock) setDrift(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.forced = d, true
	for _, st := range c.shards {
		if st.known {
			st.drift = d
		}
	}
}

// setUncapped says whether pending spans hold the clocks back.
func (c *kafkaClock) setUncapped(v bool) {
	c.mu.Lock()
	c.uncapped = v
	c.mu.Unlock()
}

// Now returns the time shard is flushed at; it makes the clock a store.Clock.
func (c *kafkaClock) Now(shard int32) time.Time { return c.at(shard, time.Now()) }

// at returns the time of shard at wall.
func (c *kafkaClock) at(shard int32, wall time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.shard(shard)
	switch {
	case st.known:
		return c.timeOf(st, wall)
	case len(st.pending) > 0 && !c.uncapped:
		return st.oldest
	case c.forced:
		return wall.Add(c.base)
	}
	if st.since.IsZero() {
		st.since = wall
	}
	if wall.Sub(st.since) < c.grace {
		return time.Time{}
	}
	// The slowest known shard is the one least likely to flush ahead of data; with
	// none known, the wall clock.
	fallback, first := wall, true
	for _, other := range c.shards {
		if !other.known {
			continue
		}
		if t := c.timeOf(other, wall); first || t.Before(fallback) {
			fallback, first = t, false
		}
	}
	return fallback
}

func (c *kafkaClock) timeOf(st *shardTime, wall time.Time) time.Time {
	t := wall.Add(st.drift)
	if len(st.pending) > 0 && !c.uncapped && st.oldest.Before(t) {
		return st.oldest
	}
	return t
}
