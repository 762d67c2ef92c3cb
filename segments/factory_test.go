package segments

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// chain is a span buffer chain built by a Factory on partitions 0 and 1 of topic
// "spans", fed by hand.
type chain struct {
	s       processor.Strategy[processor.KafkaPayload]
	prod    *producer
	f       *Factory
	offsets map[int32]int64
	// committed is the next offset committed per partition; the commit function runs
	// on the goroutine that polls the chain, the test's.
	committed map[int32]int64
}

func newChain(t *testing.T, rootTimeout time.Duration, batchSize int, batchTime time.Duration) *chain {
	t.Helper()
	return newChainWith(t, store.Config{RootTimeout: rootTimeout, Timeout: 2 * time.Second}, batchSize, batchTime)
}

func newChainWith(t *testing.T, buffer store.Config, batchSize int, batchTime time.Duration) *chain {
	t.Helper()
	// A commit here stands for "in Redis" (see ingested); these tests are about
	// the clocks, not about committing behind the flush.
	return newChainMode(t, buffer, batchSize, batchTime, CommitAfterIngest, newProducer(nil))
}

func newChainMode(t *testing.T, buffer store.Config, batchSize int, batchTime time.Duration, mode CommitMode, prod *producer) *chain {
	t.Helper()
	c := &chain{offsets: make(map[int32]int64), committed: make(map[int32]int64)}
	client, _ := flusherRedis(t)
	f, err := NewFactory(FactoryConfig{
		Redis:     client,
		Buffer:    buffer,
		Flusher:   fastConfig(prod),
		BatchSize: batchSize, BatchTime: batchTime,
		CommitMode: mode,
	})
	if err != nil {
		t.Fatalf("NewFactory: %v", err)
	}
	commit := func(co processor.Committable, _ bool) error {
		for p, next := range co.All() {
			c.committed[p.Index] = max(c.committed[p.Index], next)
		}
		return nil
	}
	s, err := f.Create(commit, []processor.Partition{{Topic: "spans", Index: 0}, {Topic: "spans", Index: 1}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Join(ctx); err != nil {
			t.Errorf("Join: %v", err)
		}
		f.Shutdown()
	})
	c.s, c.prod, c.f = s, prod, f
	return c
}

// poll polls the chain once, failing the test on an error.
func (c *chain) poll(t *testing.T) {
	t.Helper()
	if err := c.s.Poll(); err != nil {
		t.Fatalf("Poll: %v", err)
	}
}

// ingested polls the chain until the spans of partition up to offset next are
// committed, that is in Redis: ingest runs beside the loop and is forwarded on Poll.
func (c *chain) ingested(t *testing.T, partition int32, next int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("offset %d of partition %d to be committed", next, partition), waitLong, func() bool {
		c.poll(t)
		return c.committed[partition] >= next
	})
}

// acked polls the chain until the producer acknowledges a message, and returns it.
func (c *chain) acked(t *testing.T, what string) []byte {
	t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		c.poll(t)
		select {
		case v := <-c.prod.ackedCh:
			return v
		case <-deadline.C:
			t.Fatalf("no acknowledged message within %v: waited for %s", waitLong, what)
		case <-tick.C:
		}
	}
}

// submit offers one span read from partition at Kafka time ts, and polls.
func (c *chain) submit(t *testing.T, partition int32, ts time.Time, trace, span, parent string) {
	t.Helper()
	p := processor.Partition{Topic: "spans", Index: partition}
	msg := processor.NewBrokerMessage(processor.KafkaPayload{Value: spanJSON(trace, span, parent)}, p, c.offsets[partition], ts)
	c.offsets[partition]++
	if err := c.s.Submit(msg); err != nil {
		t.Fatalf("Submit span %s: %v", span, err)
	}
	c.poll(t)
}

// segmentsUntil reads flushed segments, as lists of span ids, until every one of
// spans has come out.
func (c *chain) segmentsUntil(t *testing.T, spans ...string) [][]string {
	t.Helper()
	var out [][]string
	missing := slices.Clone(spans)
	for len(missing) > 0 {
		v := c.acked(t, "segments holding spans "+spanList(missing))
		var msg struct {
			Spans []struct {
				SpanID string `json:"span_id"`
			} `json:"spans"`
		}
		if err := json.Unmarshal(v, &msg); err != nil {
			t.Fatalf("segment message %s: %v", v, err)
		}
		var ids []string
		for _, s := range msg.Spans {
			ids = append(ids, s.SpanID)
			missing = slices.DeleteFunc(missing, func(m string) bool { return m == s.SpanID })
		}
		slices.Sort(ids)
		out = append(out, ids)
	}
	return out
}

func spanList(ids []string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// A partition whose consumer lags an hour behind another must not have its segments
// flushed at the other's time: its late spans are still to be read.
func TestFactoryFlushesEachPartitionAtItsOwnTime(t *testing.T) {
	c := newChain(t, time.Second, 1, time.Hour)
	lagging, leading := time.Now().Add(-time.Hour), time.Now()
	x, y := hexID(1, 32), hexID(2, 32)
	a, b, child := hexID(0xa, 16), hexID(0xb, 16), hexID(0xc, 16)

	c.submit(t, 0, lagging, x, a, "")
	c.submit(t, 1, leading, y, b, "")
	c.ingested(t, 0, 1)
	c.ingested(t, 1, 1)
	// Every worker completes a cycle with partition 1's time an hour ahead; one
	// clock for both would flush partition 0's segment now.
	ingested := time.Now()
	waitFor(t, "every flusher worker to complete a cycle", waitLong, func() bool {
		for _, w := range c.f.Workers() {
			if !w.HealthySince.After(ingested) {
				return false
			}
		}
		return true
	})
	c.submit(t, 0, lagging.Add(50*time.Millisecond), x, child, a)
	got := c.segmentsUntil(t, a, child, b)
	if want := []string{a, child}; !slices.ContainsFunc(got, func(s []string) bool { return slices.Equal(s, want) }) {
		t.Fatalf("segments %v, want one segment %v: partition 0's was flushed at partition 1's time, before its late child arrived", got, want)
	}
}

// A newly assigned partition keeps no time until a span is read on it: a previous
// owner's fragment in its queue, long overdue by any other clock, waits for the
// spans read again from the committed offset and comes out merged with them.
func TestFactoryWaitsForANewPartitionsFirstSpan(t *testing.T) {
	c := newChainWith(t, store.Config{RootTimeout: 200 * time.Millisecond, Timeout: 30 * time.Second}, 1, time.Hour)
	lagging, now := time.Now().Add(-time.Hour), time.Now()
	x, y := hexID(1, 32), hexID(2, 32)
	a, child, b := hexID(0xa, 16), hexID(0xc, 16), hexID(0xb, 16)

	// The previous owner of partition 0 ingested the child and died before its
	// offset was committed.
	fragment, err := store.Decode(spanJSON(x, child, a), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.f.buf.Ingest(bg, []store.Span{fragment}, store.At(lagging)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	// Partition 1 is read and known, at the wall clock; b waits for a parent.
	c.submit(t, 1, now, y, b, hexID(0xf, 16))
	c.ingested(t, 1, 1)
	ingested := time.Now()
	waitFor(t, "every flusher worker to complete a cycle", waitLong, func() bool {
		for _, w := range c.f.Workers() {
			if !w.HealthySince.After(ingested) {
				return false
			}
		}
		return true
	})
	select {
	case v := <-c.prod.ackedCh:
		t.Fatalf("segment %s flushed before anything was read on its new partition", v)
	default:
	}

	c.submit(t, 0, lagging, x, a, "")
	c.submit(t, 0, lagging.Add(50*time.Millisecond), x, child, a)
	if got := c.segmentsUntil(t, a, child); len(got) != 1 || !slices.Equal(got[0], []string{a, child}) {
		t.Fatalf("segments %v, want one segment [%s %s]: the previous owner's fragment came out on its own", got, a, child)
	}
}

// A span read but still waiting in a batch holds its partition's clock, so its
// segment is not flushed without it, however long the batch waits.
func TestFactoryHoldsASegmentWhileItsSpanWaitsInABatch(t *testing.T) {
	c := newChain(t, 200*time.Millisecond, 2, time.Hour)
	now := time.Now()
	x, f, g := hexID(1, 32), hexID(2, 32), hexID(3, 32)
	a, child, fr, gr := hexID(0xa, 16), hexID(0xc, 16), hexID(0xf, 16), hexID(0x9, 16)

	c.submit(t, 0, now, x, a, "")
	c.submit(t, 1, now, f, fr, "") // the batch of two is ingested
	c.ingested(t, 1, 1)
	c.submit(t, 0, now, x, child, a)
	// The child waits in the next batch. Partition 1's segment, due at the same time
	// as partition 0's, comes out meanwhile.
	if got := c.segmentsUntil(t, fr); !slices.Equal(got[0], []string{fr}) {
		t.Fatalf("first segments out %v, want [%s] alone: partition 0's segment was flushed while its child waited in a batch", got, fr)
	}
	c.submit(t, 1, now, g, gr, "") // completes the batch
	got := c.segmentsUntil(t, a, child)
	if want := []string{a, child}; !slices.ContainsFunc(got, func(s []string) bool { return slices.Equal(s, want) }) {
		t.Fatalf("segments %v, want one segment %v", got, want)
	}
}
