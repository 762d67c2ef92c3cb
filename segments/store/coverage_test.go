package store

import (
	"errors"
	"slices"
	"testing"

	"github.com/creekstream/creek/metrics/metricstest"
)

// A flush notices that Redis was emptied (FLUSHALL) by the marker: it reports
// ErrRedisLost once, counted, emits nothing, and the next flush goes on with a new
// marker. A buffer's first flush on an empty Redis is no loss.
func TestFlushDetectsLostRedis(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		rec := metricstest.NewRecorder()
		b := newTestBuffer(t, s.client, Config{Metrics: rec})
		if _, _, err := b.flushShards(at(0)); err != nil {
			t.Fatalf("first flush on an empty Redis: %v, want nil", err)
		}
		ingest(t, b, at(0), span(t, "a", "", 0), span(t, "b", "a", 0))
		s.reset(t) // FLUSHALL (FLUSHDB on the shared real server)
		segs, _, err := b.flushShards(at(100))
		if !errors.Is(err, ErrRedisLost) || len(segs) != 0 {
			t.Fatalf("flush after FLUSHALL = %d segments, %v; want none and ErrRedisLost", len(segs), err)
		}
		if n := rec.Counter("spans.buffer.redis_lost"); n != 1 {
			t.Fatalf("spans.buffer.redis_lost = %d, want 1", n)
		}
		if _, _, err := b.flushShards(at(200)); err != nil {
			t.Fatalf("flush after the loss was reported: %v, want nil", err)
		}
		// A second buffer of the namespace (another member) that knew the old
		// marker sees it replaced.
		other := newTestBuffer(t, s.client, Config{Metrics: rec})
		other.marker = "an-older-marker"
		if _, _, err := other.flushShards(at(300)); !errors.Is(err, ErrRedisLost) {
			t.Fatalf("flush of a buffer that knew another marker = %v, want ErrRedisLost", err)
		}
	})
}

// The payload sets a batch writes are the ones a flush reports it loaded.
func TestBatchSaltsMatchFlushedSalts(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		batch := []Span{span(t, "a", "", 0), span(t, "b", "a", 1), span(t, "c", "x", 1)}
		if _, _, err := b.flushShards(at(0)); err != nil {
			t.Fatal(err)
		}
		ingest(t, b, at(0), batch...)
		byShard := BatchSalts(batch)
		var want []string
		for _, salts := range byShard {
			want = append(want, salts...)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		if len(byShard[0]) != 1 || len(byShard[1]) != 2 {
			t.Fatalf("BatchSalts = %v, want one set with a span of partition 0 and two with spans of partition 1", byShard)
		}
		segs, _, err := b.flushShards(at(100))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, seg := range segs {
			got = append(got, seg.Salts()...)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("flushed payload sets %v, want the batch's %v", got, want)
		}
	})
}
