package integration

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// runOn runs a processor for topics with consumer configuration cc (Brokers and
// Sarama filled in, and GroupID if empty) and returns the running member.
func runOn(t *testing.T, env *kafkatest.Env, cc kafka.ConsumerConfig, f processor.Factory[payload], topics ...string) *member {
	t.Helper()
	cc.Brokers, cc.Sarama = env.Brokers, kafkatest.SaramaConfig()
	if cc.GroupID == "" {
		cc.GroupID = env.Group()
	}
	if cc.Logger == nil {
		cc.Logger = zaptest.NewLogger(t)
	}
	c, err := kafka.NewConsumer(cc)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return runMember(t, c, f, processor.Config[payload]{
		Topics:       topics,
		CommitPolicy: processor.CommitPolicy{MinInterval: 100 * time.Millisecond},
	})
}

func TestRunFailsAtOnceNamingATopicKafkaCannotHold(t *testing.T) {
	env := kafkatest.New(t)
	n := &notifier{}
	a := newApp(n, newSeen(n))
	start := time.Now()
	err := runOn(t, env, kafka.ConsumerConfig{}, a, "bad topic!").result()
	if err == nil || !strings.HasPrefix(err.Error(), "processor: ") || !strings.Contains(err.Error(), `topic "bad topic!" is invalid`) {
		t.Fatalf("Run = %v, want a processor: error saying topic \"bad topic!\" is invalid", err)
	}
	// No broker round trip stands between Run and the check: seconds would mean
	// the name reached the group's retry loop.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %s to refuse the name, want it at once", took)
	}
	if created, _, _ := a.state(); created != 0 {
		t.Errorf("%d chains were built for an invalid topic", created)
	}
}

func TestMissingTopicIsWaitedForNotCreatedAndConsumedOnceCreated(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Name("topic"), env.Group()
	core, logs := observer.New(zapcore.DebugLevel)
	n := &notifier{}
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(),
		zapcore.RegisterHooks(core, func(zapcore.Entry) error { n.Notify(); return nil })))
	s := newSeen(n)
	// The default log interval, 10 s, against retries once a second.
	m := runOn(t, env, kafka.ConsumerConfig{GroupID: group, Logger: log}, newApp(n, s), topic)

	missing := zap.Strings("missing", []string{topic})
	count := func(msg string) int { return logs.FilterMessage(msg).FilterField(missing).Len() }
	const (
		waiting  = "kafka: waiting for subscribed topics to be created; the consumer does not create them"
		retrying = "kafka: subscribed topics still missing; retrying"
	)
	waitUntil(t, n, "two retries of the subscription to "+topic, func() bool { return count(retrying) >= 2 })
	if got := count(waiting); got != 1 {
		t.Errorf("%d logs of the wait for %s over its first retries, want 1: the log must not follow the retries", got, topic)
	}
	if exists, err := env.Client.TopicExists(env.Context(waitFor), topic); err != nil || exists {
		t.Fatalf("TopicExists(%s) = %v, %v while the processor waited for it; want false: consumers must not create topics (the broker allows auto-creation)", topic, exists, err)
	}

	env.CreateTopic(topic, 2)
	env.Fill(topic, 2, 50, plain)
	waitUntil(t, n, "the 100 messages of the topic created while Run waited", func() bool { return s.distinct() == 100 })
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	committedEqualsEnds(t, env, topic, group)
}
