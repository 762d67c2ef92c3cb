package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// securedClients builds b's consumer of group and its producer on the SASL_SSL
// listener s; the test's cleanup closes the producer.
func securedClients(t *testing.T, b backend, s kafkatest.Secured, group string) (processor.Consumer[payload], kafka.Writer) {
	t.Helper()
	switch b.name {
	case "sarama":
		sc := s.SaramaConfig()
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: s.Brokers, GroupID: group, Sarama: sc, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatalf("kafka.NewConsumer over SASL_SSL: %v", err)
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: s.Brokers, Sarama: kafka.ClientSettings(sc)})
		if err != nil {
			c.Close()
			t.Fatalf("kafka.NewProducer over SASL_SSL: %v", err)
		}
		t.Cleanup(func() { closeProducer(t, p.Close) })
		return c, p
	case "franz":
		c, err := franz.NewConsumer(franz.ConsumerConfig{
			Brokers: s.Brokers, GroupID: group, TLS: s.TLS, SASL: s.Mechanism(),
			HeartbeatInterval: 200 * time.Millisecond, Logger: zaptest.NewLogger(t),
			ClientOptions: []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
		})
		if err != nil {
			t.Fatalf("franz.NewConsumer over SASL_SSL: %v", err)
		}
		p, err := franz.NewProducer(franz.ProducerConfig{Brokers: s.Brokers, TLS: s.TLS, SASL: s.Mechanism()})
		if err != nil {
			c.Close()
			t.Fatalf("franz.NewProducer over SASL_SSL: %v", err)
		}
		t.Cleanup(func() { closeProducer(t, p.Close) })
		return c, p
	}
	t.Fatalf("no SASL_SSL clients for backend %q", b.name)
	return nil, nil
}

// TestSecuredListener runs a consumer, a Produce step and a DLQ on each backend
// against the real broker's SASL_SSL listener only: every valid message comes out
// on the output topic, every invalid one on the DLQ, and the group commits the
// ends. A sarama client with a wrong password is refused, so a pass means the
// credentials were used.
func TestSecuredListener(t *testing.T) {
	s := kafkatest.RealSecured(t)
	t.Run("wrong-password-refused", func(t *testing.T) {
		wrong := s
		wrong.Password = "not-" + s.Password
		sc := wrong.SaramaConfig()
		sc.Metadata.Retry.Max = 0
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: s.Brokers, Sarama: sc})
		if err == nil {
			closeProducer(t, p.Close)
			t.Fatal("the SASL_SSL listener accepted a wrong password")
		}
		t.Logf("refused as it should be: %v", err)
	})
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t) // the plaintext listener, for setup and reading back
		in, out, dlq, group := env.Topic(2), env.Topic(1), env.Topic(1), env.Group()
		const perPartition = 50
		env.Fill(in, 2, perPartition, func(p int32, i int) string {
			if i%10 == 7 {
				return fmt.Sprintf("bad-%d-%d", p, i)
			}
			return plain(p, i)
		})
		consumer, producer := securedClients(t, b, s, group)
		checked := pipeline.Map(pipeline.FromKafka(), func(_ context.Context, p payload) (payload, error) {
			if bytes.HasPrefix(p.Value, []byte("bad")) {
				return payload{}, pipeline.Invalid(errors.New("value starts with bad"))
			}
			return p, nil
		})
		produced := pipeline.Produce(checked, producer, out)
		m := runMember(t, consumer, pipeline.Commit(produced), processor.Config[payload]{
			Topics: []string{in},
			DLQ:    &processor.DLQPolicy[payload]{Producer: kafka.NewDLQProducer(producer, dlq)},
		})

		const invalid = 2 * perPartition / 10
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		got, err := env.Client.Read(ctx, out, 2*perPartition-invalid)
		if err != nil {
			t.Fatalf("reading %d messages from the output topic: %v", 2*perPartition-invalid, err)
		}
		dead, err := env.Client.Read(ctx, dlq, invalid)
		if err != nil {
			t.Fatalf("reading %d messages from the DLQ: %v", invalid, err)
		}
		for _, r := range got {
			if bytes.HasPrefix(r.Value, []byte("bad")) {
				t.Errorf("an invalid message reached the output topic: %q", r.Value)
			}
		}
		for _, r := range dead {
			if !bytes.HasPrefix(r.Value, []byte("bad")) {
				t.Errorf("a valid message reached the DLQ: %q", r.Value)
			}
		}
		if err := m.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		committedEqualsEnds(t, env, in, group)
		if n := sumEnds(t, env, out); n != 2*perPartition-invalid {
			t.Errorf("output topic holds %d messages, want %d", n, 2*perPartition-invalid)
		}
		if n := sumEnds(t, env, dlq); n != invalid {
			t.Errorf("DLQ holds %d messages, want %d", n, invalid)
		}
	})
}
