package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// runOn runs a processor on backend b for topics in group (a new one if empty),
// its consumer logging to log (the test's if nil), and returns the running member.
func runOn(t *testing.T, b backend, env *kafkatest.Env, group string, log *zap.Logger, f processor.Factory[payload], topics ...string) *member {
	t.Helper()
	if group == "" {
		group = env.Group()
	}
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	return runMember(t, loggingConsumer(t, b, env, group, log), f, processor.Config[payload]{
		Topics:       topics,
		CommitPolicy: processor.CommitPolicy{MinInterval: 100 * time.Millisecond},
	})
}

// loggingConsumer is b.consumer with the consumer's log sent to log, which the
// missing-topic test reads; the settings are the backends table's.
func loggingConsumer(t *testing.T, b backend, env *kafkatest.Env, group string, log *zap.Logger) processor.Consumer[payload] {
	t.Helper()
	var (
		c   processor.Consumer[payload]
		err error
	)
	switch b.name {
	case "sarama":
		c, err = kafka.NewConsumer(kafka.ConsumerConfig{
			Brokers: env.Brokers, GroupID: group, Sarama: kafkatest.SaramaConfig(), Logger: log,
		})
	case "franz":
		c, err = franz.NewConsumer(franz.ConsumerConfig{
			Brokers: env.Brokers, GroupID: group,
			HeartbeatInterval: 200 * time.Millisecond,
			Logger:            log,
			ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
		})
	default:
		t.Fatalf("no logging consumer for backend %q; add it here", b.name)
	}
	if err != nil {
		t.Fatalf("%s consumer: %v", b.name, err)
	}
	return c
}

func TestRunFailsAtOnceNamingATopicKafkaCannotHold(t *testing.T) {
	eachBackend(t, testRunFailsOnInvalidTopic)
}

func testRunFailsOnInvalidTopic(t *testing.T, b backend) {
	env := kafkatest.New(t)
	n := &notifier{}
	a := newApp(n, newSeen(n))
	start := time.Now()
	err := runOn(t, b, env, "", nil, a, "bad topic!").result()
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
	eachBackend(t, testMissingTopicIsWaitedFor)
}

func testMissingTopicIsWaitedFor(t *testing.T, b backend) {
	env := kafkatest.New(t)
	topic, group := env.Name("topic"), env.Group()
	core, logs := observer.New(zapcore.DebugLevel)
	n := &notifier{}
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(),
		zapcore.RegisterHooks(core, func(zapcore.Entry) error { n.Notify(); return nil })))
	s := newSeen(n)
	// The default log interval, 10 s, against retries once a second.
	m := runOn(t, b, env, group, log, newApp(n, s), topic)

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
