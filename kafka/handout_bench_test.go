package kafka

import (
	"context"
	"time"

	"testing"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/poll"
	"github.com/creekstream/creek/processor"
)

// BenchmarkPollHandout measures Poll alone, without a broker, over batches of one
// partition queued as the readers queue them.
func BenchmarkPollHandout(b *testing.B) {
	p := processor.Partition{Topic: "t", Index: 0}
	c := &Consumer{
		log: zap.NewNop(), queue: make(chan batch, 64), free: make(chan []*sarama.ConsumerMessage, 65),
		ev: poll.NewEvents(), closing: make(chan struct{}), subscribed: true,
		announced: map[processor.Partition]uint64{}, revoking: map[processor.Partition]*poll.Revocation{},
	}
	c.poller = poll.NewPoller(c.ev, poll.Client[*sarama.ConsumerMessage]{
		Queue: c.queue, Closing: c.closing, Closed: ErrClosed,
		Pause: func(map[string][]int32) {}, Resume: func(map[string][]int32) {},
		Released: c.released, Recycle: c.recycle,
	})
	c.poller.Start(processor.RebalanceCallbacks{}, zap.NewNop())
	c.ev.Assign(map[processor.Partition]uint64{p: 1})
	runHandout(b, c, func(msgs []*sarama.ConsumerMessage) { c.queue <- batch{P: p, Epoch: 1, Recs: msgs} }, c.free)
}

// runHandout polls b.N messages from c, queued in rounds of 64 batches of
// maxBatch through send with the timer stopped, so that only Poll is timed.
func runHandout(b *testing.B, c *Consumer, send func([]*sarama.ConsumerMessage), free chan []*sarama.ConsumerMessage) {
	m := &sarama.ConsumerMessage{Value: make([]byte, 100)}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		b.StopTimer()
		for range 64 {
			var msgs []*sarama.ConsumerMessage
			select {
			case msgs = <-free:
			default:
				msgs = make([]*sarama.ConsumerMessage, 0, maxBatch)
			}
			for range maxBatch {
				msgs = append(msgs, m)
			}
			send(msgs)
		}
		b.StartTimer()
		for range 64 * maxBatch {
			_, ok, err := c.Poll(context.Background(), time.Second)
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		n += 64 * maxBatch
	}
}
