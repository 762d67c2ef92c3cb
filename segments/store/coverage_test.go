package store

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

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
		other.markers = make(map[string]string)
		for k := range b.knownMarkers() {
			other.markers[k] = "an-older-marker"
		}
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

// On a Redis Cluster each master holds a marker: emptying any one master (as a
// failover to an empty replica does) is noticed, and is no loss to a buffer that
// had not flushed yet.
func TestFlushDetectsALostClusterMaster(t *testing.T) {
	addrs := requireEnv(t, "CREEK_REDIS_CLUSTER_ADDRS")
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { _ = c.Close() })
	shards, err := c.ClusterShards(bg).Result()
	if err != nil {
		t.Fatalf("CLUSTER SHARDS: %v", err)
	}
	masters := make(map[string]bool)
	ranges := 0
	for _, s := range shards {
		ranges += len(s.Slots)
		for _, n := range s.Nodes {
			if n.Role == "master" {
				masters[net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))] = true
			}
		}
	}
	if len(masters) < 2 {
		t.Fatalf("the Cluster at %s has %d masters, want several", addrs, len(masters))
	}
	for addr := range masters {
		t.Run(addr, func(t *testing.T) {
			if err := c.ForEachMaster(bg, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() }); err != nil {
				t.Fatal(err)
			}
			rec := metricstest.NewRecorder()
			b := newTestBuffer(t, c, Config{Metrics: rec})
			if _, _, err := b.flushShards(at(0)); err != nil {
				t.Fatalf("first flush: %v", err)
			}
			if n := len(b.knownMarkers()); n != ranges {
				t.Errorf("the buffer knows %d markers, want one per slot range (%d)", n, ranges)
			}
			ingest(t, b, at(0), span(t, "a", "", 0), span(t, "b", "a", 0))
			master := redis.NewClient(&redis.Options{Addr: addr})
			defer func() { _ = master.Close() }()
			if err := master.FlushAll(bg).Err(); err != nil {
				t.Fatalf("FLUSHALL on %s: %v", addr, err)
			}
			if _, _, err := b.flushShards(at(100)); !errors.Is(err, ErrRedisLost) {
				t.Fatalf("flush after FLUSHALL on master %s = %v, want ErrRedisLost", addr, err)
			}
			if n := rec.Counter("spans.buffer.redis_lost"); n != 1 {
				t.Errorf("spans.buffer.redis_lost = %d, want 1", n)
			}
			if _, _, err := b.flushShards(at(200)); err != nil {
				t.Errorf("flush after the loss was reported: %v, want nil", err)
			}
		})
	}
}

func TestSlotOf(t *testing.T) {
	// CLUSTER KEYSLOT answers: the Redis Cluster specification's CRC16 test vector
	// 123456789 (0x31C3) and foo.
	for tag, want := range map[string]uint16{"123456789": 0x31C3 % 16384, "foo": 12182} {
		if got := slotOf(tag); got != want {
			t.Errorf("slotOf(%q) = %d, want %d", tag, got, want)
		}
	}
	if tag := tagInSlots(100, 100); slotOf(tag) != 100 {
		t.Errorf("tagInSlots(100, 100) = %q in slot %d", tag, slotOf(tag))
	}
}

// After Redis lost its data, the spans the buffer flushed within the window are
// remembered all the same: the tail of a flushed segment read again (the rewind)
// forms no fragment.
func TestFlushedSpansSurviveALostRedis(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		if _, _, err := b.flushShards(at(0)); err != nil {
			t.Fatalf("first flush: %v", err)
		}
		ingest(t, b, at(0), span(t, "a", "", 0), span(t, "b", "a", 0), span(t, "c", "b", 0))
		segs, got := flushed(t, b, at(11))
		if got[segKeyA(id("a"))] != "abc" {
			t.Fatalf("flushed %v, want segment a of a, b and c", got)
		}
		done(t, b, segs)
		s.reset(t)
		if _, _, err := b.flushShards(at(20)); !errors.Is(err, ErrRedisLost) {
			t.Fatalf("flush after FLUSHALL = %v, want ErrRedisLost", err)
		}
		stats, err := b.Ingest(bg, []Span{span(t, "c", "b", 0)}, At(at(1)))
		if err != nil {
			t.Fatal(err)
		}
		if stats.Redelivered != 1 {
			t.Errorf("Ingest of c read again left out %d spans, want 1", stats.Redelivered)
		}
		if _, got := flushed(t, b, at(100)); len(got) != 0 {
			t.Errorf("flushed %v at 100, want nothing", got)
		}
	})
}
