package processor

import "slices"

// An invalid message never reaches the end of the chain, so nothing stages its
// offset: a partition whose last messages are invalid would stay uncommitted below
// them, and they would be dead-lettered again after every restart. The processor
// stages past an invalid message itself once everything before it is staged (the
// staged offset is the invalid one's), or once it is the first message polled from
// the partition. Its DLQ delivery is still awaited before that offset is committed
// (dlq.beforeCommit).

// noteInvalid records the invalid message at offset of part and stages past it if
// it is next.
func (p *StreamProcessor[T]) noteInvalid(part Partition, offset int64) {
	offs := p.invalid[part]
	i, found := slices.BinarySearch(offs, offset)
	if !found {
		p.invalid[part] = slices.Insert(offs, i, offset)
	}
	p.passInvalid(part)
}

// passInvalid stages part past the invalid messages at its staged offset.
func (p *StreamProcessor[T]) passInvalid(part Partition) {
	offs := p.invalid[part]
	if len(offs) == 0 {
		return
	}
	h := p.hotOut(part)
	if !h.assigned {
		delete(p.invalid, part)
		return
	}
	next, known := h.offset, h.dirty
	if !known {
		if s, ok := p.staged[part]; ok {
			next, known = s, true
		} else if h.hasCommitted {
			next, known = h.committed, true
		} else if f, ok := p.first[part]; ok {
			next, known = f, true
		}
	}
	if !known {
		return
	}
	passed := 0
	for passed < len(offs) && offs[passed] < next {
		passed++ // staged past already, by a later message
	}
	moved := false
	for passed < len(offs) && offs[passed] == next {
		next++
		passed++
		moved = true
	}
	if passed == len(offs) {
		delete(p.invalid, part)
	} else {
		p.invalid[part] = offs[passed:]
	}
	if moved {
		h.offset, h.dirty = next, true
	}
}
