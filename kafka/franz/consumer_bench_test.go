package franz_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// BenchmarkConsumerPoll measures messages per second through Consumer.Poll from
// a 4-partition topic of 100-byte messages, on whichever broker kafkatest picks,
// as package kafka's benchmark of the same name does for sarama.
func BenchmarkConsumerPoll(b *testing.B) {
	env := kafkatest.New(b)
	topic := env.Topic(4)
	value := make([]byte, 100)
	recs := make([]*kgo.Record, 0, 10000)
	ctx := env.Context(5 * time.Minute)
	for i := range b.N {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 4), Value: value})
		if len(recs) == cap(recs) || i == b.N-1 {
			if err := env.Client.Produce(ctx, recs...); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	c, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: env.Brokers, GroupID: env.Group()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		b.Fatal(err)
	}
	// The first message includes joining the group; time the steady state.
	if _, ok, err := c.Poll(ctx, time.Minute); !ok || err != nil {
		b.Fatalf("first Poll: ok=%v err=%v", ok, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for n := 1; n < b.N; {
		_, ok, err := c.Poll(context.Background(), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			n++
		}
	}
	b.ReportMetric(float64(b.N-1)/time.Since(start).Seconds(), "msgs/s")
}
