package segments

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/segments/store"
)

// securedCluster is a listener that requires authentication: the consumer's
// settings, and a client for the test to write spans and read what came out.
type securedCluster struct {
	brokers          []string
	sarama           *sarama.Config
	tls              *tls.Config
	mech             sasl.Mechanism
	opts             []kgo.Opt
	spans, out, dead string
}

// TestConsumerOnASecuredCluster: with the security settings given once, on
// Kafka.Sarama or Franz, the span buffer's producer uses them too, for segments and
// for the DLQ, on either backend. Built from Brokers alone it could not connect.
func TestConsumerOnASecuredCluster(t *testing.T) {
	cases := []struct {
		name    string
		cluster func(t *testing.T) securedCluster
	}{
		{"in-process SASL/PLAIN", func(t *testing.T) securedCluster {
			const user, pass = "creek", "secret"
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", user, pass),
				kfake.SeedTopics(1, "spans", "segments", "dead"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close) // after the consumer, which runConsumer stops in a later cleanup
			sc := kafkatest.SaramaConfig()
			sc.Net.SASL.Enable = true
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
			sc.Net.SASL.User, sc.Net.SASL.Password = user, pass
			mech := plain.Auth{User: user, Pass: pass}.AsMechanism()
			return securedCluster{
				brokers: cluster.ListenAddrs(), sarama: sc, mech: mech,
				opts:  []kgo.Opt{kgo.SASL(mech)},
				spans: "spans", out: "segments", dead: "dead",
			}
		}},
		{"real broker's SASL_SSL listener", func(t *testing.T) securedCluster {
			s := kafkatest.RealSecured(t)
			env := kafkatest.New(t) // the plaintext listener, to create the topics
			return securedCluster{
				brokers: s.Brokers, sarama: s.SaramaConfig(), tls: s.TLS, mech: s.Mechanism(),
				opts:  []kgo.Opt{kgo.DialTLSConfig(s.TLS), kgo.SASL(s.Mechanism())},
				spans: env.Topic(1), out: env.Topic(1), dead: env.Topic(1),
			}
		}},
	}
	for _, tc := range cases {
		for _, backend := range []Backend{Sarama, Franz} {
			t.Run(tc.name+"/"+string(backend), func(t *testing.T) {
				sc := tc.cluster(t)
				secured(t, sc, backend)
			})
		}
	}
}

// secured runs the span buffer on backend against sc and waits for a segment and a
// DLQ message.
func secured(t *testing.T, sc securedCluster, backend Backend) {
	client, err := kgo.NewClient(append(sc.opts, kgo.SeedBrokers(sc.brokers...),
		kgo.ConsumeTopics(sc.out, sc.dead), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	span := `{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`
	if err := client.ProduceSync(ctx,
		&kgo.Record{Topic: sc.spans, Value: []byte(span)},
		&kgo.Record{Topic: sc.spans, Value: []byte(`not a span`)},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	redisClient, _ := flusherRedis(t)
	flusher := fastConfig(nil)
	flusher.Producer, flusher.Topic = nil, ""
	cfg := ConsumerConfig{
		Brokers: sc.brokers, Group: "secured-" + string(backend),
		InputTopic: sc.spans, OutputTopic: sc.out, DLQTopic: sc.dead,
		Redis:     redisClient,
		Buffer:    store.Config{RootTimeout: 200 * time.Millisecond, Timeout: time.Second},
		Flusher:   flusher,
		BatchTime: 20 * time.Millisecond,
		Backend:   backend,
	}
	if backend == Sarama {
		cfg.Kafka = kafka.ConsumerConfig{Sarama: sc.sarama}
	} else {
		cfg.Franz = franz.ConsumerConfig{TLS: sc.tls, SASL: sc.mech}
	}
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatalf("NewConsumer on a secured cluster: %v", err)
	}
	runConsumer(t, ctx, c)
	got := map[string]int{}
	for got[sc.out] == 0 || got[sc.dead] == 0 {
		fetches := client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("within 60 s, %d segments and %d DLQ messages came out; want one of each", got[sc.out], got[sc.dead])
		}
		fetches.EachRecord(func(r *kgo.Record) { got[r.Topic]++ })
	}
}
