package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"

	"github.com/twmb/franz-go/pkg/kgo"
)

// generated is the stream to produce and what should come out of it.
type generated struct {
	records []*kgo.Record
	// expected maps every valid span id to the id of the segment root it belongs to.
	expected map[string]string
	// record maps every valid span id to its input record, for failure reports.
	record   map[string]*kgo.Record
	segments int
	// invalid holds the values of the invalid spans.
	invalid map[string]bool
}

// generate builds traces of nested segments: a root, children, and under some
// children a nested segment (is_segment true) with children of its own. The spans
// of a trace are shuffled, so parents often come after their children, and a trace
// stays on one partition. The seed is fixed: every run checks the same stream.
func generate(traces, invalid, partitions int) generated {
	rng := rand.New(rand.NewPCG(1, 2))
	g := generated{expected: make(map[string]string), record: make(map[string]*kgo.Record), invalid: make(map[string]bool)}
	next := uint64(0)
	newID := func() string {
		next++
		return fmt.Sprintf("%016x", next*0x9e3779b97f4a7c15)
	}
	project := 0
	for t := range traces {
		traceID := fmt.Sprintf("%032x", uint64(t+1)*0x2545f4914f6cdd1d)
		project = 1 + t%7
		var spans []*kgo.Record
		add := func(id, parent, root string, isSegment bool) {
			g.expected[id] = root
			r := &kgo.Record{Key: []byte(traceID), Value: spanValue(project, traceID, id, parent, isSegment)}
			g.record[id] = r
			spans = append(spans, r)
		}
		root := newID()
		add(root, "", root, true)
		g.segments++
		for range 1 + rng.IntN(5) {
			child := newID()
			if rng.IntN(4) == 0 {
				// A nested segment: its subtree is a segment of its own.
				add(child, root, child, true)
				g.segments++
				for range 1 + rng.IntN(3) {
					add(newID(), child, child, false)
				}
				continue
			}
			add(child, root, root, false)
			for range rng.IntN(3) {
				add(newID(), child, root, false)
			}
		}
		rng.Shuffle(len(spans), func(i, j int) { spans[i], spans[j] = spans[j], spans[i] })
		p := partitionOf(traceID, partitions)
		for _, r := range spans {
			r.Partition = p
			g.records = append(g.records, r)
		}
	}
	for i := range invalid {
		var v string
		if i%2 == 0 {
			v = fmt.Sprintf(`{"project_id":1,"span_id":"%s","trace_id":null,"start_timestamp":1.0,"end_timestamp":2.0}`, newID())
		} else {
			v = fmt.Sprintf(`{"project_id":1,"span_id":"%s","trace_id":"%032x","start_timestamp":1.0,"end_timestamp":"2.0"}`, newID(), i)
		}
		g.invalid[v] = true
		// Spread the invalid spans over the stream.
		at := rng.IntN(len(g.records) + 1)
		rec := &kgo.Record{Partition: int32(i % partitions), Value: []byte(v)}
		g.records = append(g.records[:at], append([]*kgo.Record{rec}, g.records[at:]...)...)
	}
	return g
}

func spanValue(project int, trace, id, parent string, isSegment bool) []byte {
	s := map[string]any{
		"project_id":      project,
		"organization_id": 1,
		"trace_id":        trace,
		"span_id":         id,
		"is_segment":      isSegment,
		"start_timestamp": 1700000000.0,
		"end_timestamp":   1700000000.5,
		"description":     "GET /api/items",
	}
	if parent != "" {
		s["parent_span_id"] = parent
	}
	v, _ := json.Marshal(s) // a map of plain values always marshals
	return v
}

// partitionOf keeps a trace on one partition, as Sentry's producers do.
func partitionOf(trace string, partitions int) int32 {
	h := fnv.New32a()
	h.Write([]byte(trace))
	return int32(h.Sum32() % uint32(partitions))
}
