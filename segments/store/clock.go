package store

import "time"

// A Clock tells the Kafka time of each shard (Kafka partition). Deadlines are
// computed from it, never from the wall clock: partitions are consumed at different
// rates, and a lagging one must not be flushed at a leading one's time. The span
// buffer's pipeline keeps one clock per consumer; At serves a single time.
type Clock interface {
	Now(shard int32) time.Time
}

// At is a Clock that stands still at the same time for every shard.
type At time.Time

// Now returns t for every shard.
func (t At) Now(int32) time.Time { return time.Time(t) }
