package segments

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// A consumer started while the brokers are unreachable waits for them, saying so,
// and starts once they answer.
func TestNewConsumerWaitsForTheBrokers(t *testing.T) {
	env := kafkatest.New(t)
	client, _ := flusherRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	attempts := 0
	connect := func(ctx context.Context, cfg ConsumerConfig) (closingWriter, error) {
		attempts++
		if attempts <= 2 {
			return nil, errBroker
		}
		return connectProducer(ctx, cfg)
	}
	c, err := newConsumer(context.Background(), ConsumerConfig{
		Brokers: env.Brokers, Group: env.Group(), InputTopic: env.Topic(1), OutputTopic: env.Topic(1),
		Redis: client, BrokerWait: time.Minute, Logger: zap.New(core),
	}, connect)
	if err != nil {
		t.Fatalf("newConsumer: %v, want it to wait for the brokers", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(runCtx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := logs.FilterMessage("Kafka brokers unreachable; waiting for them before starting").Len(); n != 2 {
		t.Errorf("%d waiting logs, want 2 (one per failed attempt)", n)
	}
	if n := logs.FilterMessage("Kafka brokers reachable; starting").Len(); n != 1 {
		t.Errorf("%d logs saying the brokers are reachable, want 1", n)
	}
}

// The wait is bounded by BrokerWait; the error names the brokers and the bound and
// wraps the last failure. A cancelled context ends the wait too.
func TestNewConsumerGivesUpOnUnreachableBrokers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	client, _ := flusherRedis(t)
	core, logs := observer.New(zap.InfoLevel)
	cfg := ConsumerConfig{
		Brokers: []string{addr}, Group: "g", InputTopic: "in", OutputTopic: "out",
		Redis: client, BrokerWait: 1500 * time.Millisecond, Logger: zap.New(core),
	}
	start := time.Now()
	_, err = NewConsumer(cfg)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "BrokerWait 1.5s") {
		t.Fatalf("NewConsumer on %s = %v, want an error naming the brokers and BrokerWait", addr, err)
	}
	t.Logf("gave up after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if n := logs.FilterMessage("Kafka brokers unreachable; waiting for them before starting").Len(); n < 1 {
		t.Errorf("no log said the consumer waits for the brokers")
	}

	fails := func(context.Context, ConsumerConfig) (closingWriter, error) { return nil, errBroker }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg.BrokerWait = time.Hour
	if _, err := newConsumer(ctx, cfg, fails); !errors.Is(err, context.Canceled) || !errors.Is(err, errBroker) {
		t.Fatalf("newConsumer with a cancelled context = %v, want context.Canceled and the broker's error", err)
	}
}
