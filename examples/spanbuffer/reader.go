package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// reader reads the segment and DLQ topics from the start on its own goroutine and
// keeps what it saw. mu guards the maps and counters; changed gets a value after
// each poll that brought records.
type reader struct {
	cl       *kgo.Client
	segTopic string
	cancel   context.CancelFunc
	done     chan struct{}
	changed  chan struct{}

	mu sync.Mutex
	// seen maps a span id to its emissions: the segment id it came out under and
	// when that segment was produced.
	seen      map[string][]emission
	dead      map[string]bool
	segments  int
	spans     int
	badOutput int
}

type readerStats struct{ segments, spans, dlq int }

// emission is one output of a span.
type emission struct {
	segment string
	at      time.Time
}

// misplaced is an expected span that came out under another segment id.
type misplaced struct {
	span, want string
	got        []emission
}

func newReader(brokers []string, segTopic, dlqTopic string) (*reader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(segTopic, dlqTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("output reader: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{cl: cl, segTopic: segTopic, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1),
		seen: make(map[string][]emission), dead: make(map[string]bool)}
	go r.loop(ctx)
	return r, nil
}

func (r *reader) loop(ctx context.Context) {
	defer close(r.done)
	for ctx.Err() == nil {
		fs := r.cl.PollFetches(ctx)
		if fs.NumRecords() == 0 {
			continue
		}
		r.mu.Lock()
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Topic != r.segTopic {
				r.dead[string(rec.Value)] = true
				return
			}
			spans, err := decodeSegment(rec.Value)
			if err != nil {
				r.badOutput++
				return
			}
			r.segments++
			r.spans += len(spans)
			for id, seg := range spans {
				r.seen[id] = append(r.seen[id], emission{seg, rec.Timestamp})
			}
		})
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
}

func (r *reader) close() {
	r.cancel()
	<-r.done
	r.cl.Close()
}

func (r *reader) stats() readerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return readerStats{segments: r.segments, spans: r.spans, dlq: len(r.dead)}
}

// complete reports whether every expected span and every invalid one was seen.
func (r *reader) complete(g generated) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) < len(g.expected) || len(r.dead) < len(g.invalid) {
		return false
	}
	for id := range g.expected {
		if len(r.seen[id]) == 0 {
			return false
		}
	}
	return true
}

// check returns the expected spans that never came out, those that came out under
// another segment id (even once, beside the right one), the number of extra
// emissions (duplicates, which at-least-once allows) and of output messages that
// were not segments.
func (r *reader) check(g generated) (missing []string, wrong []misplaced, dupes, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, want := range g.expected {
		got := r.seen[id]
		if len(got) == 0 {
			missing = append(missing, id)
			continue
		}
		dupes += len(got) - 1
		for _, e := range got {
			if e.segment != want {
				wrong = append(wrong, misplaced{span: id, want: want, got: got})
				break
			}
		}
	}
	slices.Sort(missing)
	slices.SortFunc(wrong, func(a, b misplaced) int { return strings.Compare(a.span, b.span) })
	return missing, wrong, dupes, r.badOutput
}

func (r *reader) deadLettered(v string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dead[v]
}
