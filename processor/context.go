package processor

import "context"

// chainKey is the key under which a partition's context holds its chain's, for
// BatchContext.
type chainKey struct{}

// contexts owns the contexts the processor gives messages: one per strategy chain
// and, below it, one per assigned partition. A message's context lasts as long as its
// result can still be committed: a partition's is cancelled when the partition is
// released, and the chain's when the chain has been joined (or its join timed out)
// or terminated. Shutdown and revocation therefore let work in flight finish within
// JoinTimeout before they cancel it.
//
// The loop goroutine owns it.
type contexts struct {
	// base carries the values of Run's context and is never cancelled.
	base context.Context
	// chain is the running chain's context, holding itself under chainKey; nil
	// while no chain runs.
	chain       context.Context
	cancelChain context.CancelFunc
	parts       map[Partition]partitionContext
	// leftover holds the partitions revoked from the running chain while it still
	// had work of theirs: that work is cancelled and dropped, so the chain must not
	// commit for them again (see assign).
	leftover map[Partition]bool
}

type partitionContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newContexts() contexts {
	return contexts{
		base:     context.Background(),
		parts:    make(map[Partition]partitionContext),
		leftover: make(map[Partition]bool),
	}
}

// startChain makes the context of a new chain.
func (c *contexts) startChain() {
	ctx, cancel := context.WithCancel(c.base)
	c.chain = context.WithValue(ctx, chainKey{}, ctx)
	c.cancelChain = cancel
}

// add makes the contexts of newly assigned partitions.
func (c *contexts) add(parts []Partition) {
	for _, part := range parts {
		if _, ok := c.parts[part]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(c.chain)
		c.parts[part] = partitionContext{ctx: ctx, cancel: cancel}
	}
}

// of returns the context for a message of part: its partition's, or the chain's.
func (c *contexts) of(part Partition) context.Context {
	if pc, ok := c.parts[part]; ok {
		return pc.ctx
	}
	return c.chain
}

// release cancels the contexts of revoked partitions; with unfinished, their work
// outlived the wait for it.
func (c *contexts) release(parts []Partition, unfinished []Partition) {
	for _, part := range parts {
		if pc, ok := c.parts[part]; ok {
			pc.cancel()
			delete(c.parts, part)
		}
	}
	for _, part := range unfinished {
		c.leftover[part] = true
	}
}

// hasLeftover reports whether any of parts was released with work still in the
// running chain.
func (c *contexts) hasLeftover(parts []Partition) bool {
	for _, part := range parts {
		if c.leftover[part] {
			return true
		}
	}
	return false
}

// endChain cancels the chain's context and every partition's below it.
func (c *contexts) endChain() {
	if c.cancelChain != nil {
		c.cancelChain()
	}
	c.chain, c.cancelChain = nil, nil
	clear(c.parts)
	clear(c.leftover)
}
