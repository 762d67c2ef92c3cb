package processor

import "context"

// hotPartition caches what the loop knows of one partition. Messages come in runs of
// one partition (the consumer hands out fetched batches), and hashing the topic name
// for the four or five map operations each message needed cost more than the rest
// of the loop. The processor keeps two: in for the partition of the latest polled
// message, out for the partition offsets were last staged for; they differ when a
// strategy reorders or batches.
//
// An offset held here is not yet in its map; flushHot writes it there before
// anything reads the maps (commits, revocations) and forgets the cache whenever the
// assignment or the committed offsets change.
type hotPartition struct {
	part Partition
	// ctx is in's context for the partition's messages; polled says whether the
	// partition's first polled offset is known (p.first).
	ctx      context.Context
	polled   bool
	valid    bool
	assigned bool
	// offset is the submitted (in) or staged (out) offset waiting for its map, if
	// dirty.
	offset int64
	dirty  bool
	// committed is out's committed offset, if hasCommitted.
	committed    int64
	hasCommitted bool
}

// hotIn returns the in cache for part, loading it if it held another partition.
func (p *StreamProcessor[T]) hotIn(part Partition) *hotPartition {
	h := &p.in
	if h.valid && h.part == part {
		return h
	}
	p.flushIn()
	_, polled := p.first[part]
	*h = hotPartition{part: part, valid: true, assigned: p.assigned[part], ctx: p.ctxs.of(part), polled: polled}
	return h
}

// hotOut returns the out cache for part, loading it if it held another partition.
func (p *StreamProcessor[T]) hotOut(part Partition) *hotPartition {
	h := &p.out
	if h.valid && h.part == part {
		return h
	}
	p.flushOut()
	committed, ok := p.committed[part]
	*h = hotPartition{part: part, valid: true, assigned: p.assigned[part], committed: committed, hasCommitted: ok}
	return h
}

// markSubmitted records that the strategy accepted a message carrying c.
func (p *StreamProcessor[T]) markSubmitted(c Committable) {
	part, next, ok := c.Single()
	if !ok {
		c.MergeInto(p.submitted)
		return
	}
	if h := p.hotIn(part); !h.dirty || next > h.offset {
		h.offset, h.dirty = next, true
	}
}

func (p *StreamProcessor[T]) flushIn() {
	if h := &p.in; h.dirty {
		if cur, ok := p.submitted[h.part]; !ok || h.offset > cur {
			p.submitted[h.part] = h.offset
		}
		h.dirty = false
	}
}

func (p *StreamProcessor[T]) flushOut() {
	if h := &p.out; h.dirty {
		if cur, ok := p.staged[h.part]; !ok || h.offset > cur {
			p.staged[h.part] = h.offset
		}
		h.dirty = false
	}
}

// flushHot writes both caches to the maps and forgets them, as the maps or the
// assignment are about to be read or changed.
func (p *StreamProcessor[T]) flushHot() {
	p.flushIn()
	p.flushOut()
	p.in, p.out = hotPartition{}, hotPartition{}
}
