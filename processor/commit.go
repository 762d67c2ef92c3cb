package processor

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"
)

// commitRetryDelay spaces commits after a failed one, so that a broker that refuses
// commits is not asked again for every message.
const commitRetryDelay = time.Second

// stage is the CommitFunc given to the factory. It must be called from the strategy's
// methods, which run on the loop goroutine that owns the staged offsets.
func (p *StreamProcessor[T]) stage(c Committable, force bool) error {
	if part, next, ok := c.Single(); ok {
		p.stageOne(part, next)
	} else if c.Len() > 0 {
		for part, next := range c.All() {
			p.stageOne(part, next)
		}
	}
	if force {
		return p.commit(true)
	}
	return p.commitIfDue()
}

func (p *StreamProcessor[T]) stageOne(part Partition, next int64) {
	h := p.hotOut(part)
	// A partition no longer assigned belongs to another member: committing for it
	// could move that member's offsets back.
	if !h.assigned {
		return
	}
	if h.hasCommitted && next <= h.committed {
		return
	}
	if !h.dirty || next > h.offset {
		h.offset, h.dirty = next, true
	}
	if len(p.invalid) > 0 {
		p.passInvalid(part)
	}
}

// commitIfDue commits the staged offsets when the commit policy says so.
func (p *StreamProcessor[T]) commitIfDue() error {
	if len(p.staged) == 0 && !p.out.dirty {
		return nil
	}
	// The loop's latest clock reading: a commit decided a little late is still due.
	now := p.now
	if p.cfg.CommitPolicy.MinMessages > 0 {
		// Only a policy counting messages reads the staged offsets.
		p.flushOut()
	} else if now.Before(p.commitDueAt) {
		// Called twice per message; this is the answer nearly every time.
		return nil
	}
	if now.Before(p.retryCommitAt) || !p.policy.ShouldCommit(now, p.staged) {
		return nil
	}
	return p.commit(false)
}

// commit commits the staged offsets, after the DLQ deliveries below them. A failed
// commit keeps them staged; it is an error only when forced, since then the caller
// (a Join) needs the offsets committed before it returns.
func (p *StreamProcessor[T]) commit(force bool) error {
	p.flushOut()
	if len(p.staged) == 0 {
		return nil
	}
	prev := p.phase
	p.setPhase(phaseCommit)
	defer p.setPhase(prev)
	offsets := maps.Clone(p.staged)
	if p.dlq != nil {
		p.dlq.beforeCommit(offsets, force)
		for part, next := range offsets {
			if c, ok := p.committed[part]; (ok && next <= c) || (!ok && next == p.first[part]) {
				delete(offsets, part) // nothing past what the group has
			}
		}
		if len(offsets) == 0 {
			// Held back by the DLQ: nothing to commit yet, and the staged offsets stay.
			p.commitDueAt = time.Now().Add(p.cfg.CommitPolicy.MinInterval)
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CommitTimeout)
	err := p.consumer.Commit(ctx, offsets)
	cancel()
	now := time.Now()
	if err != nil {
		p.m.commitErr.Add(1)
		p.retryCommitAt = now.Add(commitRetryDelay)
		p.commitDueAt = p.retryCommitAt
		if force {
			return &commitError{offsets: CommittableFromMap(offsets), err: err}
		}
		p.log.Warn("processor: commit failed; offsets stay staged", zap.Error(err))
		return nil
	}
	p.m.commitOK.Add(1)
	p.retryCommitAt = time.Time{}
	p.commitDueAt = now.Add(p.cfg.CommitPolicy.MinInterval)
	p.policy.DidCommit(now, offsets)
	maps.Copy(p.committed, offsets)
	p.flushHot()
	if p.dlq != nil {
		p.dlq.committed(offsets)
	}
	// A partition held back by the DLQ keeps its staged offset for a later commit.
	maps.DeleteFunc(p.staged, func(part Partition, next int64) bool { return offsets[part] == next })
	return nil
}

// commitError is a forced commit that failed. At a revocation it means the
// partitions' work can no longer be committed (the group session died with the
// broker, say): they are lost, not a reason to stop (see revoke).
type commitError struct {
	offsets Committable
	err     error
}

func (e *commitError) Error() string {
	return fmt.Sprintf("processor: commit %s: %v", e.offsets, e.err)
}

func (e *commitError) Unwrap() error { return e.err }
