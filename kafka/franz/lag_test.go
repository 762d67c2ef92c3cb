package franz_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

type mark struct{ high, committed int64 }

func watermarksOf(c *franz.Consumer) map[processor.Partition]mark {
	out := make(map[processor.Partition]mark)
	c.Watermarks(func(p processor.Partition, high, committed int64) { out[p] = mark{high, committed} })
	return out
}

func TestConsumerWatermarksOfOwnedPartitions(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(2), env.Group()
	env.Fill(topic, 2, 10, plain)
	p0 := processor.Partition{Topic: topic, Index: 0}
	p1 := processor.Partition{Topic: topic, Index: 1}

	// A first member commits partition 0 up to 4 and leaves.
	l := subscribe(t, newConsumer(t, env, group, ""), topic)
	l.until("all 20 messages", func() bool { return len(l.msgs) == 20 })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := l.c.Commit(ctx, map[processor.Partition]int64{p0: 4}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := l.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c2 := newConsumer(t, env, group, "")
	franz.SetRefreshInterval(c2, 20*time.Millisecond)
	l2 := subscribe(t, c2, topic)
	// Fetches carry the high watermark; the committed offsets kgo fetched at the
	// assignment come with the refresh.
	want := map[processor.Partition]mark{p0: {10, 4}, p1: {10, -1}}
	l2.until("the owned partitions' watermarks", func() bool { return maps.Equal(watermarksOf(c2), want) })

	// Paused partitions are not fetched; the periodic ListOffsets sees them grow.
	c2.Pause([]processor.Partition{p0, p1})
	env.Fill(topic, 2, 5, plain)
	want = map[processor.Partition]mark{p0: {15, 4}, p1: {15, -1}}
	l2.until("the refreshed watermarks", func() bool { return maps.Equal(watermarksOf(c2), want) })
	if err := c2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
