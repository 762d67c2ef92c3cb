package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxLoggedSpans bounds the span ids a buffer keeps in memory to rewrite their
// flushed-span records after a Redis loss: about 40 MB. Past it the oldest are
// forgotten, and copies of them read again after a loss may come out again.
const maxLoggedSpans = 1_000_000

// flushedLog holds, oldest first, the spans this buffer removed from Redis within
// the redelivery window. A Redis that lost its data lost their records too, and the
// rewind that follows reads again the spans whose offsets were not committed, some
// of them flushed already: rewriting the records first lets ingest drop those
// copies as after a crash. mu guards the rest.
type flushedLog struct {
	mu      sync.Mutex
	entries []flushedEntry
	head    int // entries[:head] are forgotten
	spans   int // span ids in entries[head:]
}

type flushedEntry struct {
	pt  string
	ids []string
	at  time.Time
}

// add records the spans of segs, removed from Redis at now, and forgets what is
// older than window or beyond maxLoggedSpans.
func (l *flushedLog) add(segs map[string]FlushedSegment, now time.Time, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, seg := range segs {
		if len(seg.spanIDs) > 0 {
			l.entries = append(l.entries, flushedEntry{pt: seg.pt, ids: seg.spanIDs, at: now})
			l.spans += len(seg.spanIDs)
		}
	}
	for l.head < len(l.entries) {
		e := l.entries[l.head]
		if l.spans <= maxLoggedSpans && now.Sub(e.at) <= window {
			break
		}
		l.spans -= len(e.ids)
		l.entries[l.head] = flushedEntry{}
		l.head++
	}
	if l.head > 1024 && l.head > len(l.entries)/2 {
		l.entries, l.head = append(l.entries[:0], l.entries[l.head:]...), 0
	}
}

// since returns, by trace, the span ids recorded within window before now and when
// the trace's last of them was recorded.
func (l *flushedLog) since(now time.Time, window time.Duration) map[string]flushedEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]flushedEntry)
	for _, e := range l.entries[l.head:] {
		if now.Sub(e.at) > window {
			continue
		}
		t := out[e.pt]
		t.ids = append(t.ids, e.ids...)
		t.at = e.at
		out[e.pt] = t
	}
	return out
}

// rewriteFlushed writes the flushed-span records of the spans this buffer flushed
// within the window back into Redis, each trace's with what is left of its expiry.
func (b *Buffer) rewriteFlushed(ctx context.Context) (spans int, err error) {
	window := b.cfg.RedeliveryWindow
	if window <= 0 {
		return 0, nil
	}
	now := time.Now()
	traces := b.flushed.since(now, window)
	if len(traces) == 0 {
		return 0, nil
	}
	err = b.pipeline(ctx, func(p redis.Pipeliner) {
		for pt, t := range traces {
			key := b.keys.flushed(pt)
			for i := 0; i < len(t.ids); i += 1000 {
				ids := t.ids[i:min(i+1000, len(t.ids))]
				fields := make([]any, 0, 2*len(ids))
				for _, id := range ids {
					fields = append(fields, id, "1")
				}
				p.HSet(ctx, key, fields...)
			}
			p.PExpire(ctx, key, max(window-now.Sub(t.at), time.Millisecond))
			spans += len(t.ids)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("store: rewriting the records of flushed spans: %w", err)
	}
	return spans, nil
}
