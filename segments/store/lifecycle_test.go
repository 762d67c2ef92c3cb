package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/redistest"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string // "" = valid
	}{
		{Config{}, ""},
		{Config{CompressionLevel: -1, FlushLockTTL: time.Second, Slice: "2"}, ""},
		{Config{Timeout: 5 * time.Second}, "RootTimeout (10s) must not exceed Config.Timeout (5s)"},
		{Config{TTL: 30 * time.Second}, "TTL (30s) must exceed Config.Timeout (1m0s)"},
		{Config{TTL: 3600500 * time.Millisecond}, "whole seconds"},
		{Config{MaxSegmentBytes: -1}, "MaxSegmentBytes (-1) must be positive"},
		{Config{CompressionLevel: 23}, "CompressionLevel (23)"},
		{Config{Slice: "a}b"}, "Slice"},
		{Config{FlushLockTTL: -time.Second}, "must not be negative"},
	}
	for _, tc := range cases {
		_, err := New(redistest.NotUsed(), tc.cfg)
		if tc.want == "" && err != nil {
			t.Errorf("New(%+v): %v", tc.cfg, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("New(%+v) = %v, want an error mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

// TestRetriedBatch checks that ingesting the same batch twice counts it once.
func TestRetriedBatch(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		batch := []Span{span(t, "a", "", 0), span(t, "b", "a", 0)}
		ingest(t, b, at(0), batch...)
		ingest(t, b, at(0), batch...)
		segs, stats, err := b.flushShards(at(10))
		if err != nil {
			t.Fatal(err)
		}
		if got := summarize(t, segs); got[segKeyA(id("a"))] != "ab" || stats.Dropped != 0 {
			t.Fatalf("flushed %v with %d dropped, want segment a of a, b and none dropped", got, stats.Dropped)
		}
		done(t, b, segs)
		assertOnlyRootFlags(t, s.client)
	})
}

// TestSpanDuringFlush checks that a span added between flush and cleanup survives
// the cleanup and is flushed later.
func TestSpanDuringFlush(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		ingest(t, b, at(0), span(t, "a", "", 0))
		segs, _ := flushed(t, b, at(10))
		ingest(t, b, at(5), span(t, "b", "a", 0))
		done(t, b, segs)
		if _, got := flushed(t, b, at(14)); len(got) != 0 {
			t.Fatalf("flush at 14 gave %v, want nothing before the new deadline", got)
		}
		segs, got := flushed(t, b, at(15))
		if got[segKeyA(id("a"))] != "b" || len(got) != 1 {
			t.Fatalf("flush at 15 gave %v, want segment a with the late span b", got)
		}
		done(t, b, segs)
		assertAllExpire(t, s.client)
		assertOnlyRootFlags(t, s.client)
	})
}

// TestLostPayloads checks that spans whose payloads vanished are counted as dropped.
func TestLostPayloads(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		ingest(t, b, at(0), span(t, "a", "", 0))
		ingest(t, b, at(0), span(t, "b", "a", 0))
		lost := span(t, "b", "a", 0)
		if err := s.client.Del(bg, testKeys.payload(traceTag(1, traceA), saltOf([]*Span{&lost}))).Err(); err != nil {
			t.Fatal(err)
		}
		segs, stats, err := b.flushShards(at(10))
		if err != nil {
			t.Fatal(err)
		}
		if got := summarize(t, segs); got[segKeyA(id("a"))] != "a" || stats.Dropped != 1 {
			t.Fatalf("flushed %v with %d dropped, want segment a of a and 1 dropped", got, stats.Dropped)
		}
		done(t, b, segs)
		// The lost span's redirect is left to expire: nothing loaded names it.
		assertAllExpire(t, s.client)
	})
}

// TestLateSpanAfterPartialCleanup checks that the redirects of spans flushed while
// a late span kept their segment alive are removed, not left until their TTL: with
// no lock, and after a flush lock expired (so the late span merged instead of being
// detached).
func TestLateSpanAfterPartialCleanup(t *testing.T) {
	for _, lockTTL := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprintf("lock=%v", lockTTL), func(t *testing.T) {
			eachStore(t, func(t *testing.T, s store) {
				b := newTestBuffer(t, s.client, Config{FlushLockTTL: lockTTL})
				ingest(t, b, at(0), span(t, "a", "", 0), span(t, "c", "a", 0))
				segs, got := flushed(t, b, at(10))
				if got[segKeyA(id("a"))] != "ac" || len(got) != 1 {
					t.Fatalf("flush at 10 gave %v, want segment a with a, c", got)
				}
				if lockTTL > 0 {
					// What the lock's expiry does, without waiting for it.
					if err := s.client.Del(bg, testKeys.lock(segKeyA(id("a")))).Err(); err != nil {
						t.Fatal(err)
					}
				}
				ingest(t, b, at(5), span(t, "b", "a", 0))
				done(t, b, segs)
				redirects, err := s.client.HGetAll(bg, testKeys.redirect(traceTag(1, traceA))).Result()
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]string{id("b"): id("a")}; fmt.Sprint(redirects) != fmt.Sprint(want) {
					t.Errorf("redirects after the first cleanup: %v, want only the late span's %v", redirects, want)
				}
				segs, got = flushed(t, b, at(15))
				if got[segKeyA(id("a"))] != "b" || len(got) != 1 {
					t.Fatalf("flush at 15 gave %v, want segment a with the late span b", got)
				}
				done(t, b, segs)
				assertAllExpire(t, s.client)
				assertOnlyRootFlags(t, s.client)
			})
		})
	}
}
