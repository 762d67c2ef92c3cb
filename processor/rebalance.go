package processor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"
)

// lostJoinTimeout bounds the join of a chain whose partitions were all lost (at most
// JoinTimeout). Its work can never be committed and its messages' contexts are
// cancelled before the join, so the join only lets the chain's goroutines see that
// and stop before a new chain starts; a step that still waits then (a delivery to an
// unreachable broker, say) is abandoned.
const lostJoinTimeout = time.Second

// revokePollInterval spaces the strategy polls while a cooperative revocation waits
// for the revoked partitions' offsets.
const revokePollInterval = 5 * time.Millisecond

// onAssign is the OnAssign callback; it runs inside consumer.Poll on the loop
// goroutine.
func (p *StreamProcessor[T]) onAssign(added []Partition) {
	p.callback(func() error { return p.assign(added) })
}

// onRevoke is the OnRevoke callback; it runs inside consumer.Poll on the loop
// goroutine, and the partitions are released when it returns.
func (p *StreamProcessor[T]) onRevoke(revoked []Partition) {
	p.callback(func() error { return p.revoke(revoked) })
}

// onLost is the OnLost callback; it runs inside consumer.Poll on the loop goroutine.
func (p *StreamProcessor[T]) onLost(lost []Partition) {
	p.callback(func() error { return p.lose(lost) })
}

// callback runs a rebalance step and keeps its error, or panic, for the loop: the
// consumer's callbacks cannot return one.
func (p *StreamProcessor[T]) callback(f func() error) {
	if p.cbErr != nil {
		return
	}
	start := time.Now()
	prev := p.phase
	p.setPhase(phaseRebalance)
	var err error
	if perr := protect(func() { err = f() }); perr != nil {
		err = perr
	}
	p.cbErr = err
	p.setPhase(prev)
	p.m.callbackTime.Add(time.Since(start))
}

func (p *StreamProcessor[T]) assign(added []Partition) error {
	p.m.assigned.Add(int64(len(added)))
	p.flushHot()
	for _, part := range added {
		p.assigned[part] = true
	}
	all := p.assignment()
	p.log.Info("processor: partitions assigned", zap.Stringers("added", added), zap.Int("assigned", len(all)))
	if p.strategy != nil && p.ctxs.hasLeftover(added) {
		// The chain still holds cancelled work of a partition it gets back, and a
		// later message of it finishing there could commit past a dropped one.
		p.log.Info("processor: rebuilding the strategy: a partition it gets back had work left in it when it was revoked", zap.Stringers("added", added))
		if err := p.closeStrategy(); err != nil {
			return err
		}
	}
	if p.strategy == nil {
		p.ctxs.startChain()
		p.ctxs.add(all)
		s, err := p.factory.Create(p.stage, all)
		if err != nil {
			return fmt.Errorf("processor: create strategy for %v: %w", all, err)
		}
		p.strategy = s
		p.m.createStrategy.Add(1)
	} else {
		p.ctxs.add(added)
		if w, ok := p.factory.(AssignmentWatcher); ok {
			w.PartitionsChanged(all)
		}
	}
	// The cache may hold a partition's context from before.
	p.flushHot()
	if p.bp.paused {
		p.consumer.Pause(added)
	}
	return nil
}

// revoke hands partitions back. When nothing remains (every eager revocation) the
// strategy is closed and joined so its offsets are committed first. When some remain
// (cooperative) the chain keeps running for them and revoke waits, within
// JoinTimeout, for the revoked partitions' offsets to reach what was submitted.
func (p *StreamProcessor[T]) revoke(revoked []Partition) error {
	p.m.revoked.Add(int64(len(revoked)))
	p.flushHot()
	gone := make(map[Partition]bool, len(revoked))
	for _, part := range revoked {
		if p.assigned[part] {
			gone[part] = true
		}
	}
	p.log.Info("processor: partitions revoked", zap.Stringers("revoked", revoked), zap.Int("remaining", len(p.assigned)-len(gone)))
	if len(gone) == len(p.assigned) {
		if err := p.closeStrategy(); err != nil {
			var cerr *commitError
			if !errors.As(err, &cerr) {
				return err
			}
			// Nothing was committed past unfinished work, so nothing is lost but
			// the commit: the next owner (maybe this member, once the group is
			// back) reads the partitions again from the last commit.
			p.m.lost.Add(int64(len(gone)))
			p.log.Error("processor: revoked partitions' offsets could not be committed; treating them as lost, to be consumed again from the last commit",
				zap.Stringers("partitions", revoked), zap.Error(err))
		}
	} else if p.strategy != nil {
		p.bp.dropPartitions(gone)
		if p.bp.empty() {
			// What was rejected is gone with its partitions; nothing holds the rest back.
			p.accepted()
		}
		unfinished, err := p.drainRevoked(gone)
		if err != nil {
			return err
		}
		p.ctxs.release(slices.Collect(maps.Keys(gone)), unfinished)
	}
	p.forget(slices.Collect(maps.Keys(gone)))
	p.partitionsChanged()
	return nil
}

// forget drops everything the processor keeps for partitions it no longer has: a
// later stage of their offsets is ignored (stageOne), so nothing is committed for
// them again.
func (p *StreamProcessor[T]) forget(parts []Partition) {
	p.forgetLag(parts)
	if p.dlq != nil {
		p.dlq.forget(parts)
	}
	p.policy.Forget(parts)
	p.flushHot()
	for _, part := range parts {
		delete(p.assigned, part)
		delete(p.staged, part)
		delete(p.committed, part)
		delete(p.submitted, part)
		delete(p.invalid, part)
		delete(p.first, part)
	}
}

// partitionsChanged tells the factory of the running chain the new assignment.
func (p *StreamProcessor[T]) partitionsChanged() {
	if p.strategy != nil {
		if w, ok := p.factory.(AssignmentWatcher); ok {
			w.PartitionsChanged(p.assignment())
		}
	}
}

// drainRevoked polls the strategy and commits until the committed offsets of the
// revoked partitions reach what was submitted for them, or JoinTimeout passes. Work
// left over is redelivered to the partitions' next owner; it returns the partitions
// that had some.
func (p *StreamProcessor[T]) drainRevoked(gone map[Partition]bool) ([]Partition, error) {
	deadline := time.Now().Add(p.cfg.JoinTimeout)
	for {
		if err := p.commitRevoked(gone); err != nil {
			p.log.Warn("processor: commit during revocation failed; retrying", zap.Error(err))
		}
		pending := p.uncommitted(gone)
		if len(pending) == 0 {
			return nil, nil
		}
		if !time.Now().Before(deadline) {
			p.m.revokeTimeouts.Add(1)
			p.log.Warn("processor: revoked partitions released with uncommitted work; it will be redelivered",
				zap.Stringers("partitions", pending), zap.Duration("waited", p.cfg.JoinTimeout))
			return pending, nil
		}
		p.hb.Tick()
		if err := p.strategy.Poll(); err != nil {
			inv, ok := AsInvalid(err)
			if !ok {
				return nil, fmt.Errorf("processor: strategy poll during revocation: %w", err)
			}
			if err := p.handleInvalid(inv); err != nil {
				return nil, err
			}
		}
		p.bp.wait(context.Background(), revokePollInterval)
	}
}

// commitRevoked commits at once whatever is staged for revoked partitions instead of
// at the commit policy's pace: the partitions are about to go.
func (p *StreamProcessor[T]) commitRevoked(gone map[Partition]bool) error {
	p.flushOut()
	for part := range gone {
		if _, ok := p.staged[part]; ok {
			return p.commit(true)
		}
	}
	return nil
}

// uncommitted returns the revoked partitions whose committed offset is behind what
// was submitted for them.
func (p *StreamProcessor[T]) uncommitted(gone map[Partition]bool) []Partition {
	p.flushIn()
	var out []Partition
	for part := range gone {
		if sub, ok := p.submitted[part]; ok && p.committed[part] < sub {
			out = append(out, part)
		}
	}
	SortPartitions(out)
	return out
}

// closeStrategy closes and joins the strategy within JoinTimeout, then commits what it
// staged.
func (p *StreamProcessor[T]) closeStrategy() error {
	if p.strategy == nil {
		return nil
	}
	s := p.strategy
	prev := p.phase
	p.setPhase(phaseJoin)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.JoinTimeout)
	var err error
	if perr := protect(func() { s.Close(); err = s.Join(ctx) }); perr != nil {
		err = perr
	}
	cancel()
	p.ctxs.endChain()
	p.m.joinTime.Add(time.Since(start))
	p.m.closeStrategy.Add(1)
	p.strategy = nil
	p.resetBackpressure()
	p.setPhase(prev)
	if err != nil {
		inv, ok := AsInvalid(err)
		if !ok {
			return fmt.Errorf("processor: join strategy: %w", err)
		}
		if err := p.handleInvalid(inv); err != nil {
			return err
		}
	}
	return p.commit(true)
}

// assignment returns the assigned partitions, sorted.
func (p *StreamProcessor[T]) assignment() []Partition {
	out := slices.Collect(maps.Keys(p.assigned))
	SortPartitions(out)
	return out
}

// lose gives up partitions taken away without a rebalance (the group session
// expired, the member was fenced): they may already be another member's, so nothing
// more is committed for them. Their messages' contexts are cancelled at once and
// everything kept for them is dropped. When nothing remains, the chain is closed and
// joined within lostJoinTimeout, without a commit. When some partitions remain the
// chain keeps running for them, as after a cooperative revocation that gave up: the
// lost partitions' offsets are no longer staged, and a lost partition with work left
// in the chain makes assign rebuild it should the partition come back. The lost
// partitions are read again from the last commit by whoever gets them.
func (p *StreamProcessor[T]) lose(lost []Partition) error {
	p.flushHot()
	gone := make(map[Partition]bool, len(lost))
	for _, part := range lost {
		if p.assigned[part] {
			gone[part] = true
		}
	}
	if len(gone) == 0 {
		p.log.Info("processor: partitions reported lost were not assigned; nothing to drop", zap.Stringers("lost", lost))
		return nil
	}
	parts := slices.Collect(maps.Keys(gone))
	SortPartitions(parts)
	p.m.lost.Add(int64(len(parts)))
	all := len(gone) == len(p.assigned)
	if all {
		p.ctxs.endChain()
	} else {
		p.ctxs.release(parts, p.uncommitted(gone))
	}
	p.bp.dropPartitions(gone)
	p.forget(parts)
	var joinErr error
	if all {
		joinErr = p.terminateLost()
	} else if p.strategy != nil {
		if p.bp.empty() {
			// What was rejected is gone with its partitions; nothing holds the rest back.
			p.accepted()
		}
		p.partitionsChanged()
	}
	p.flushHot()
	fields := []zap.Field{zap.Stringers("partitions", parts), zap.Int("remaining", len(p.assigned))}
	if joinErr != nil {
		// The failed work was of lost partitions, and it is redelivered with them: it
		// is no reason to stop, which would turn a broker outage into an exit.
		fields = append(fields, zap.NamedError("dropped_error", joinErr))
		if pe, ok := errors.AsType[*PanicError](joinErr); ok {
			fields = append(fields, zap.ByteString("stack", pe.Stack))
		}
	}
	p.log.Warn("processor: partitions lost (the group session expired or the member was fenced); their work is dropped uncommitted and consumed again from the last commit", fields...)
	return nil
}

// terminateLost closes the chain of lost partitions and joins it within
// lostJoinTimeout. Nothing is committed: their offsets are forgotten already, so the
// commits the chain asks for while it joins have nothing to send. It returns the
// join's error, which concerns only work that is dropped.
func (p *StreamProcessor[T]) terminateLost() error {
	if p.strategy == nil {
		p.resetBackpressure()
		return nil
	}
	s := p.strategy
	prev := p.phase
	p.setPhase(phaseJoin)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), min(p.cfg.JoinTimeout, lostJoinTimeout))
	var err error
	if perr := protect(func() { s.Close(); err = s.Join(ctx) }); perr != nil {
		err = perr
	}
	cancel()
	p.m.joinTime.Add(time.Since(start))
	p.m.closeStrategy.Add(1)
	p.strategy = nil
	p.resetBackpressure()
	p.setPhase(prev)
	return err
}
