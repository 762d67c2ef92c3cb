package franz_test

// Test helpers for the consumer's and producer's own tests. The processor
// scenarios (each message once, restart, backpressure, members joining and
// leaving, the DLQ) run on both backends in package integration.

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// waitFor bounds every wait of these tests.
const waitFor = 60 * time.Second

func TestMain(m *testing.M) {
	// go-metrics, which sarama (imported through package kafka) records into,
	// starts one ticker goroutine per process and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

type payload = processor.KafkaPayload

// receive returns the next value from ch, failing the test, named by what it
// waited for, if none comes within waitFor.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("%s: nothing within %s", what, waitFor)
		panic("unreachable")
	}
}

// newConsumer returns a franz.Consumer for group with heartbeats short enough
// that rebalances are noticed quickly.
func newConsumer(t *testing.T, env *kafkatest.Env, group, assignor string) *franz.Consumer {
	t.Helper()
	c, err := franz.NewConsumer(franz.ConsumerConfig{
		Brokers:           env.Brokers,
		GroupID:           group,
		Assignor:          assignor,
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            zaptest.NewLogger(t),
		ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

func plain(p int32, i int) string { return fmt.Sprintf("%d-%d", p, i) }
