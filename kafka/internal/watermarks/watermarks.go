// Package watermarks keeps what a Kafka consumer knows of how far its claimed
// partitions reach: the latest high watermark and the group's committed offset of
// each. Both of creek's consumers fill a Table from what their fetches return and
// refresh it with a periodic ListOffsets, and answer the processor's
// Watermarks from it (processor/lag.go), without a request per message or per
// gauge.
package watermarks

import (
	"context"
	"sync"
	"time"

	"github.com/creekstream/creek/processor"
)

// RefreshInterval is how often a consumer lists the high watermarks of its claimed
// partitions. Fetches keep them current while a partition is read; a paused
// partition, or one whose reader waits for the processor, is not fetched, and
// this bounds how old its figure gets.
const RefreshInterval = 5 * time.Second

// RefreshTimeout bounds one refresh.
const RefreshTimeout = 5 * time.Second

// Table is the high watermark and committed offset of each claimed partition. Its
// methods are safe for concurrent use; mu guards parts, and only Each calls out
// with mu held: to the claims' live functions and to its caller's yield.
type Table struct {
	mu    sync.Mutex
	parts map[processor.Partition]*entry
}

type entry struct {
	// epoch identifies the claim, so that a claim ending late does not remove
	// the entry of the partition's next claim.
	epoch uint64
	// high is the highest high watermark observed, -1 if none.
	high int64
	// live, if not nil, returns the client's own current high watermark of the
	// claim (sarama keeps one per claim); it must not block.
	live func() int64
	// committed is the group's committed offset as the consumer knows it, -1 if
	// none.
	committed int64
}

// Claim starts tracking p for the claim epoch: committed is the group's committed
// offset the claim started from (-1 if the group has none) and live, if not nil,
// the client's own high watermark of the claim. A claim of an earlier epoch than
// the one tracked is ignored.
func (t *Table) Claim(p processor.Partition, epoch uint64, committed int64, live func() int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.parts[p]; ok && e.epoch > epoch {
		return
	}
	if t.parts == nil {
		t.parts = make(map[processor.Partition]*entry)
	}
	t.parts[p] = &entry{epoch: epoch, high: -1, live: live, committed: max(committed, -1)}
}

// Release stops tracking p if its claim is epoch.
func (t *Table) Release(p processor.Partition, epoch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.parts[p]; ok && e.epoch == epoch {
		delete(t.parts, p)
	}
}

// Observe records a high watermark of p, if p is claimed. The highest one wins:
// a ListOffsets answer may arrive after a fetch that saw more.
func (t *Table) Observe(p processor.Partition, high int64) {
	if high < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.parts[p]; ok && high > e.high {
		e.high = high
	}
}

// ObserveCommitted records that the group has committed offset for p, if p is
// claimed and offset is above what is known.
func (t *Table) ObserveCommitted(p processor.Partition, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.parts[p]; ok && offset > e.committed {
		e.committed = offset
	}
}

// Partitions returns the claimed partitions, in no particular order.
func (t *Table) Partitions() []processor.Partition {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]processor.Partition, 0, len(t.parts))
	for p := range t.parts {
		out = append(out, p)
	}
	return out
}

// Each calls yield, with the table locked, for every claimed partition whose high
// watermark is known: the higher of the observed one and the client's own, and
// the committed offset (-1 if unknown). yield must not call the Table.
func (t *Table) Each(yield func(p processor.Partition, high, committed int64)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, e := range t.parts {
		high := e.high
		if e.live != nil {
			high = max(high, e.live())
		}
		if high >= 0 {
			yield(p, high, e.committed)
		}
	}
}

// Refresh calls refresh every interval with the claimed partitions, if any, until
// stop is closed; it returns then. Each call's context ends after timeout or when
// stop is closed, whichever comes first. refresh reports what it learns through
// Observe and ObserveCommitted.
func (t *Table) Refresh(stop <-chan struct{}, interval, timeout time.Duration, refresh func(ctx context.Context, parts []processor.Partition)) {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Ends a refresh under way when stop is closed; returns with Refresh.
		select {
		case <-stop:
			cancel()
		case <-base.Done():
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		select {
		case <-stop:
			// Both were ready and the tick won.
			return
		default:
		}
		parts := t.Partitions()
		if len(parts) == 0 {
			continue
		}
		ctx, cancelRefresh := context.WithTimeout(base, timeout)
		refresh(ctx, parts)
		cancelRefresh()
	}
}
