package kafka

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

type mark struct{ high, committed int64 }

func watermarksOf(c *Consumer) map[processor.Partition]mark {
	out := make(map[processor.Partition]mark)
	c.Watermarks(func(p processor.Partition, high, committed int64) { out[p] = mark{high, committed} })
	return out
}

// pollUntil polls c on the test's goroutine, dropping what it returns, until cond
// holds.
func pollUntil(t *testing.T, c *Consumer, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; watermarks %v", waitFor, what, watermarksOf(c))
		}
		if _, _, err := c.Poll(context.Background(), 20*time.Millisecond); err != nil {
			t.Fatalf("Poll while waiting for %s: %v", what, err)
		}
	}
}

func TestConsumerWatermarksOfItsClaims(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(2), env.Group()
	produce(t, env, topic, indexes(2), 10)
	parts := partitionsOf(topic, 0, 1)
	p0, p1 := parts[0], parts[1]

	// A first member commits partition 0 up to 4 and leaves.
	c := newTestConsumer(t, env, group, "")
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	pollN(t, c, 20, "all 20 messages")
	if err := c.Commit(env.Context(waitFor), map[processor.Partition]int64{p0: 4}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c2 := newTestConsumer(t, env, group, "")
	defer c2.Close()
	c2.refreshInterval = 20 * time.Millisecond
	if err := c2.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	// A claim knows the partition's end and the offset it started from.
	want := map[processor.Partition]mark{p0: {10, 4}, p1: {10, -1}}
	pollUntil(t, c2, "the claims' watermarks", func() bool { return maps.Equal(watermarksOf(c2), want) })

	// Paused partitions are not fetched; the periodic ListOffsets sees them grow.
	c2.Pause(parts)
	produce(t, env, topic, indexes(2), 5)
	want = map[processor.Partition]mark{p0: {15, 4}, p1: {15, -1}}
	pollUntil(t, c2, "the refreshed watermarks", func() bool { return maps.Equal(watermarksOf(c2), want) })

	if err := c2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := watermarksOf(c2); len(got) != 0 {
		t.Errorf("watermarks after Close = %v, want none: the claims ended", got)
	}
}
