package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Two batches of one trace written at the same time interleave their subsegments'
// scripts in any order; every order of the spans, split anywhere into two batches
// written concurrently, must still give one segment.
func TestConcurrentBatchesOfOneTrace(t *testing.T) {
	type edge struct{ self, parent string }
	spans := []edge{{"e", "d"}, {"d", "b"}, {"b", "c"}, {"c", "a"}, {"a", ""}}
	want := fmt.Sprint(map[string]string{segKeyA(id("a")): "abcde"})
	eachStore(t, func(t *testing.T, s store) {
		runs := 0
		for _, perm := range permutations(len(spans)) {
			all := make([]Span, len(perm))
			for i, j := range perm {
				all[i] = span(t, spans[j].self, spans[j].parent, 0)
			}
			for k := 1; k < len(all); k++ {
				runs++
				s.reset(t)
				b := newTestBuffer(t, s.client, Config{})
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, batch := range [][]Span{all[:k], all[k:]} {
					wg.Go(func() { _, errs[i] = b.Ingest(bg, batch, At(at(0))) })
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatalf("Ingest: %v", err)
				}
				segs, got := flushed(t, b, at(11))
				if fmt.Sprint(got) != want {
					t.Fatalf("order %v split after %d: flush at 11 gave %v, want %v", perm, k, got, want)
				}
				done(t, b, segs)
				if _, got := flushed(t, b, at(30)); len(got) != 0 {
					t.Fatalf("order %v split after %d: flush at 30 after cleanup gave %v, want nothing", perm, k, got)
				}
				assertOnlyRootFlags(t, s.client)
			}
		}
		t.Logf("%d orders and splits checked", runs)
	})
}
