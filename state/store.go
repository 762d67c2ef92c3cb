package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lovoo/goka/storage"
	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
)

// positionKey is the store key under which a store keeps how far it is: the next
// changelog offset to restore from and the last input offset applied. One key for
// both, so that a crash between two writes cannot separate them. goka's own offset
// (SetOffset) is not used: it holds one number, and before MarkRecovered it is
// written only every thirty seconds.
const positionKey = "__creek.position"

// restoreCheckpoint is how many changelog records a restore applies between writes
// of the position, so that a restore cut short resumes near where it stopped.
const restoreCheckpoint = 10_000

// restoreRetry is the wait before a failed restore starts again.
const restoreRetry = time.Second

// errStoreAhead is what a Changelog returns when a store's position is past the end
// of its partition: the topic was deleted and made again, and the local copy is of
// an older one.
var errStoreAhead = errors.New("the local store is ahead of the changelog")

// position is what positionKey holds.
type position struct {
	// next is the changelog offset to restore from.
	next int64
	// applied is the last input offset applied; -1 before any.
	applied int64
}

func readPosition(st storage.Storage) (position, error) {
	b, err := st.Get(positionKey)
	if err != nil || b == nil {
		return position{next: 0, applied: -1}, err
	}
	a, c, ok := strings.Cut(string(b), " ")
	next, err1 := strconv.ParseInt(a, 10, 64)
	applied, err2 := strconv.ParseInt(c, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return position{}, fmt.Errorf("position %q is not two offsets", b)
	}
	return position{next: next, applied: applied}, nil
}

func writePosition(st storage.Storage, p position) error {
	b := strconv.AppendInt(nil, p.next, 10)
	b = append(b, ' ')
	return st.Set(positionKey, strconv.AppendInt(b, p.applied, 10))
}

// partition is the state of one assigned input partition. The loop goroutine owns
// it, except the store while the restore goroutine has it: the store is handed over
// through restored.
type partition[T, V any] struct {
	part processor.Partition
	// ctx is the context of the partition's messages, which the processor cancels
	// when the partition is revoked or lost.
	ctx context.Context
	// restored delivers the restore goroutine's one result.
	restored chan restoreResult
	cancel   context.CancelFunc
	// st is the store once restored; nil while restoring.
	st storage.Storage
	// applied is the last input offset applied, including changes not yet
	// acknowledged by the changelog.
	applied int64
	// dirty holds, for each key with a change not yet acknowledged, the latest
	// such change: reads see it before the store does.
	dirty  map[string]*entry[T, V]
	closed bool
}

type restoreResult struct {
	st      storage.Storage
	pos     position
	records int
	took    time.Duration
	err     error
}

// open starts restoring the store of part.
func (s *Step[T, V]) open(ctx context.Context, part processor.Partition) *partition[T, V] {
	rctx, cancel := context.WithCancel(context.Background())
	p := &partition[T, V]{part: part, ctx: ctx, restored: make(chan restoreResult, 1), cancel: cancel, applied: -1, dirty: map[string]*entry[T, V]{}}
	s.cfg.Logger.Info("state: restoring store", zap.String("state", s.cfg.Name), zap.Stringer("partition", part))
	go func() { p.restored <- s.restore(rctx, part.Index) }()
	return p
}

// restore opens the store of partition and brings it up to the end of its
// changelog, trying again after failures until ctx is done.
func (s *Step[T, V]) restore(ctx context.Context, partition int32) restoreResult {
	start := time.Now()
	st, err := s.cfg.Storage(s.cfg.Name, partition)
	if err != nil {
		return restoreResult{err: fmt.Errorf("state: %s: open store of partition %d: %w", s.cfg.Name, partition, err)}
	}
	if err := st.Open(); err != nil {
		return restoreResult{err: fmt.Errorf("state: %s: open store of partition %d: %w", s.cfg.Name, partition, err)}
	}
	for {
		pos, n, err := s.catchUp(ctx, st, partition)
		if err == nil {
			err = st.MarkRecovered()
		}
		if err == nil {
			return restoreResult{st: st, pos: pos, records: n, took: time.Since(start)}
		}
		if ctx.Err() != nil {
			_ = st.Close()
			return restoreResult{err: ctx.Err()}
		}
		s.cfg.Logger.Error("state: restore failed; trying again", zap.String("state", s.cfg.Name),
			zap.Int32("partition", partition), zap.Duration("in", restoreRetry), zap.Error(err))
		t := time.NewTimer(restoreRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = st.Close()
			return restoreResult{err: ctx.Err()}
		case <-t.C:
		}
	}
}

// catchUp applies the changelog from the store's position to the end.
func (s *Step[T, V]) catchUp(ctx context.Context, st storage.Storage, partition int32) (position, int, error) {
	pos, err := readPosition(st)
	if err != nil {
		return pos, 0, err
	}
	n := 0
	apply := func(r Record) error {
		var err error
		if len(r.Value) == 0 {
			err = st.Delete(string(r.Key))
		} else {
			err = st.Set(string(r.Key), r.Value)
		}
		if err != nil {
			return err
		}
		pos.next, pos.applied = r.Offset+1, max(pos.applied, r.Applied)
		if n++; n%restoreCheckpoint == 0 {
			return writePosition(st, pos)
		}
		return nil
	}
	next, err := s.cfg.Changelog.Restore(ctx, partition, pos.next, apply)
	if errors.Is(err, errStoreAhead) {
		s.cfg.Logger.Warn("state: local store is ahead of its changelog, which must have been made again; restoring from the start",
			zap.String("state", s.cfg.Name), zap.Int32("partition", partition), zap.Int64("local_position", pos.next))
		if err := clearStore(st); err != nil {
			return pos, n, err
		}
		pos = position{next: 0, applied: -1}
		next, err = s.cfg.Changelog.Restore(ctx, partition, 0, apply)
	}
	if err != nil {
		return pos, n, err
	}
	pos.next = max(pos.next, next)
	return pos, n, writePosition(st, pos)
}

// clearStore deletes every key of st.
func clearStore(st storage.Storage) error {
	it, err := st.Iterator()
	if err != nil {
		return err
	}
	var keys []string
	for it.Next() {
		keys = append(keys, string(it.Key()))
	}
	err = it.Err()
	it.Release()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// ready takes the restore's result if it is there, and reports whether p's store
// can be used. A failed restore is an error only when it was not cancelled.
func (s *Step[T, V]) ready(p *partition[T, V]) (bool, error) {
	if p.st != nil {
		return true, nil
	}
	select {
	case res := <-p.restored:
		p.restored = nil
		if res.err != nil {
			return false, res.err
		}
		p.st, p.applied = res.st, res.pos.applied
		if s.cfg.Table != nil {
			s.cfg.Table.add(p.part.Index, p.st, s.cfg.Codec)
		}
		s.cfg.Metrics.Timing("state.restore_time", res.took)
		s.cfg.Logger.Info("state: store restored", zap.String("state", s.cfg.Name), zap.Stringer("partition", p.part),
			zap.Int("records", res.records), zap.Int64("applied_offset", res.pos.applied), zap.Duration("took", res.took))
		return true, nil
	default:
		return false, nil
	}
}

// close stops p's restore or closes its store. Changes still in flight are
// dropped: their partition is gone, and its next owner restores from the changelog.
func (s *Step[T, V]) close(p *partition[T, V]) error {
	if p.closed {
		return nil
	}
	p.closed = true
	p.cancel()
	clear(p.dirty)
	if p.st == nil && p.restored != nil {
		if res := <-p.restored; res.st != nil {
			p.st = res.st
		}
	}
	if p.st == nil {
		return nil
	}
	if s.cfg.Table != nil {
		s.cfg.Table.remove(p.part.Index, p.st)
	}
	if err := p.st.Close(); err != nil {
		return fmt.Errorf("state: %s: close store of %s: %w", s.cfg.Name, p.part, err)
	}
	return nil
}
