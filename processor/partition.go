package processor

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
)

// Partition names one partition of a topic. It is comparable and usable as a map key.
type Partition struct {
	Topic string
	Index int32
}

func (p Partition) String() string { return fmt.Sprintf("%s/%d", p.Topic, p.Index) }

// Position names one message on the broker.
type Position struct {
	Partition Partition
	Offset    int64
}

// Committable maps partitions to the next offset to consume: offset + 1 of the last
// broker message a processed message stands for. The zero value is empty.
//
// A Committable is a value and never changes once built, so messages may share it.
// The single-partition case, which is every message read from the broker, is held
// without a map so that carrying it costs no allocation, and its partition is held
// field by field, so that the index and the count share a word: every message
// carries a Committable through every call of a chain, and 8 bytes less of it is
// 8 bytes less to copy each time.
type Committable struct {
	oneTopic string
	oneOff   int64
	many     map[Partition]int64
	oneIndex int32
	n        int32 // 0, 1 (held in oneTopic, oneIndex and oneOff) or len(many)
}

// CommittableOf returns a Committable of one partition.
func CommittableOf(p Partition, next int64) Committable {
	return Committable{oneTopic: p.Topic, oneIndex: p.Index, oneOff: next, n: 1}
}

// one returns the partition of a single-partition Committable.
func (c Committable) one() Partition { return Partition{Topic: c.oneTopic, Index: c.oneIndex} }

// CommittableFromMap returns a Committable holding m. The caller must not modify m
// afterwards.
func CommittableFromMap(m map[Partition]int64) Committable {
	switch len(m) {
	case 0:
		return Committable{}
	case 1:
		for p, o := range m {
			return CommittableOf(p, o)
		}
	}
	return Committable{n: int32(len(m)), many: m}
}

// Len returns the number of partitions.
func (c Committable) Len() int { return int(c.n) }

// Get returns the next offset to consume of p.
func (c Committable) Get(p Partition) (int64, bool) {
	switch c.n {
	case 0:
		return 0, false
	case 1:
		if c.many == nil {
			if c.oneIndex == p.Index && c.oneTopic == p.Topic {
				return c.oneOff, true
			}
			return 0, false
		}
	}
	o, ok := c.many[p]
	return o, ok
}

// Single returns the partition and offset of a single-partition Committable, the
// shape of every message read from the broker. Hot paths test it before ranging
// over All, whose iterator allocates.
func (c Committable) Single() (Partition, int64, bool) {
	if c.n == 1 && c.many == nil {
		return c.one(), c.oneOff, true
	}
	return Partition{}, 0, false
}

// All iterates over the partitions and their offsets in no particular order.
func (c Committable) All() iter.Seq2[Partition, int64] {
	return func(yield func(Partition, int64) bool) {
		if c.n == 1 && c.many == nil {
			yield(c.one(), c.oneOff)
			return
		}
		for p, o := range c.many {
			if !yield(p, o) {
				return
			}
		}
	}
}

// Map returns the offsets as a new map.
func (c Committable) Map() map[Partition]int64 {
	m := make(map[Partition]int64, int(c.n))
	c.MergeInto(m)
	return m
}

// MergeInto merges c into m, keeping the highest offset per partition.
func (c Committable) MergeInto(m map[Partition]int64) {
	if p, o, ok := c.Single(); ok {
		if cur, found := m[p]; !found || o > cur {
			m[p] = o
		}
		return
	}
	for p, o := range c.many {
		if cur, ok := m[p]; !ok || o > cur {
			m[p] = o
		}
	}
}

// Merge returns the union of c and o, keeping the highest offset per partition.
func (c Committable) Merge(o Committable) Committable {
	switch {
	case o.n == 0:
		return c
	case c.n == 0:
		return o
	case c.n == 1 && o.n == 1 && c.many == nil && o.many == nil && c.oneIndex == o.oneIndex && c.oneTopic == o.oneTopic:
		return CommittableOf(c.one(), max(c.oneOff, o.oneOff))
	}
	m := make(map[Partition]int64, int(c.n)+int(o.n))
	c.MergeInto(m)
	o.MergeInto(m)
	return CommittableFromMap(m)
}

// Equal reports whether c and o hold the same offsets.
func (c Committable) Equal(o Committable) bool {
	if c.n != o.n {
		return false
	}
	for p, off := range c.All() {
		if got, ok := o.Get(p); !ok || got != off {
			return false
		}
	}
	return true
}

func (c Committable) String() string {
	parts := slices.SortedFunc(maps.Keys(c.Map()), comparePartitions)
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range parts {
		if i > 0 {
			b.WriteString(", ")
		}
		o, _ := c.Get(p)
		fmt.Fprintf(&b, "%s:%d", p, o)
	}
	b.WriteByte('}')
	return b.String()
}

func comparePartitions(a, b Partition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return int(a.Index) - int(b.Index)
}

// SortPartitions sorts ps by topic, then index.
func SortPartitions(ps []Partition) { slices.SortFunc(ps, comparePartitions) }
