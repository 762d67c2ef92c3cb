package segments

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/segments/store"
)

// TestConsumerOnASASLCluster: with SASL set once, on Kafka.Sarama, the span buffer's
// producer authenticates too, and a segment comes out. Built from Brokers alone it
// could not connect, and NewConsumer failed.
func TestConsumerOnASASLCluster(t *testing.T) {
	const user, pass = "creek", "secret"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", user, pass), kfake.SeedTopics(1, "spans", "segments"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close) // after the consumer, which runConsumer stops in a later cleanup
	client, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()),
		kgo.ConsumeTopics("segments"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	span := `{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`
	if err := client.ProduceSync(ctx, &kgo.Record{Topic: "spans", Value: []byte(span)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	sc := kafkatest.SaramaConfig()
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	sc.Net.SASL.User, sc.Net.SASL.Password = user, pass
	redisClient, _ := flusherRedis(t)
	flusher := fastConfig(nil)
	flusher.Producer, flusher.Topic = nil, ""
	c, err := NewConsumer(ConsumerConfig{
		Brokers: cluster.ListenAddrs(), Group: "secured",
		InputTopic: "spans", OutputTopic: "segments",
		Redis:     redisClient,
		Buffer:    store.Config{RootTimeout: 200 * time.Millisecond, Timeout: time.Second},
		Flusher:   flusher,
		BatchTime: 20 * time.Millisecond,
		Kafka:     kafka.ConsumerConfig{Sarama: sc},
	})
	if err != nil {
		t.Fatalf("NewConsumer on a SASL cluster: %v", err)
	}
	runConsumer(t, ctx, c)
	for {
		fetches := client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal("no segment came out within 60 s")
		}
		if fetches.NumRecords() > 0 {
			return
		}
	}
}
