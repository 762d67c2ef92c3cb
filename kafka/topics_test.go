package kafka

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/internal/await"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

func TestValidateTopic(t *testing.T) {
	for _, ok := range []string{"orders", "ordersss-missing", "a.b_c-D9", strings.Repeat("x", MaxTopicLength), "...", ".a"} {
		if err := ValidateTopic(ok); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", ok, err)
		}
	}
	for _, tt := range []struct{ topic, want string }{
		{"", "empty"},
		{".", `"." is invalid: Kafka reserves`},
		{"..", `".." is invalid: Kafka reserves`},
		{strings.Repeat("x", MaxTopicLength+1), "has 250 characters, Kafka allows at most 249"},
		{"bad topic!", `"bad topic!" is invalid: it has ' ' at byte 3`},
		{"orders/eu", `'/' at byte 6`},
		{"ördrs", `'ö' at byte 0`},
	} {
		err := ValidateTopic(tt.topic)
		if err == nil || !strings.HasPrefix(err.Error(), "kafka: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidateTopic(%q) = %v, want an error starting \"kafka: \" containing %q", tt.topic, err, tt.want)
		}
	}
}

func TestSubscribeRefusesTopicNamesKafkaCannotHold(t *testing.T) {
	env := kafkatest.New(t)
	c := newTestConsumer(t, env, env.Group(), "")
	defer c.Close()
	err := c.Subscribe([]string{"fine", "bad topic!", ".."}, processor.RebalanceCallbacks{})
	if err == nil {
		t.Fatal("Subscribe accepted \"bad topic!\" and \"..\"")
	}
	for _, want := range []string{`"bad topic!" is invalid`, `".." is invalid`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Subscribe error = %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `"fine"`) {
		t.Errorf("Subscribe error = %q names the valid topic \"fine\"", err)
	}
	if _, _, err := c.Poll(context.Background(), time.Millisecond); !errors.Is(err, ErrNotSubscribed) {
		t.Errorf("Poll after a refused Subscribe = %v, want ErrNotSubscribed", err)
	}
}

// pollError polls c until Poll fails and returns the error.
func pollError(t *testing.T, c *Consumer, what string) error {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		_, ok, err := c.Poll(context.Background(), 100*time.Millisecond)
		if err != nil {
			return err
		}
		if ok {
			t.Fatalf("Poll returned a message while waiting for %s", what)
		}
	}
	t.Fatalf("timed out after %s waiting for %s", waitFor, what)
	return nil
}

// TestConsumerFailsWhenTheBrokerRefusesATopic covers a name that passes
// ValidateTopic but that a broker refuses all the same, as a broker with
// stricter rules would: the group must not retry it for ever.
func TestConsumerFailsWhenTheBrokerRefusesATopic(t *testing.T) {
	const refused = "creek-refused"
	kf, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	addr := kf.ListenAddrs()[0]
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	kf.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		mreq := req.(*kmsg.MetadataRequest)
		names := false
		for _, rt := range mreq.Topics {
			names = names || rt.Topic != nil && *rt.Topic == refused
		}
		if !names {
			return nil, nil, false
		}
		resp := mreq.ResponseKind().(*kmsg.MetadataResponse)
		resp.Version = mreq.Version
		resp.ControllerID = 0
		resp.Brokers = []kmsg.MetadataResponseBroker{{NodeID: 0, Host: host, Port: int32(port)}}
		for _, rt := range mreq.Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	c, err := NewConsumer(ConsumerConfig{
		Brokers: []string{addr}, GroupID: "g", Sarama: kafkatest.SaramaConfig(), Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe([]string{refused}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	err = pollError(t, c, "the broker's refusal of "+refused)
	if !errors.Is(err, sarama.ErrInvalidTopic) || !strings.Contains(err.Error(), refused) || !strings.HasPrefix(err.Error(), "kafka: ") {
		t.Fatalf("Poll error = %v, want a kafka: error wrapping sarama.ErrInvalidTopic that names %s", err, refused)
	}
}

// TestConsumerFailsWhenARealBrokerRefusesATopic sends a name the client would
// refuse straight to a real broker, which answers INVALID_TOPIC_EXCEPTION (the
// in-process one answers UNKNOWN_TOPIC_OR_PARTITION instead).
func TestConsumerFailsWhenARealBrokerRefusesATopic(t *testing.T) {
	if len(kafkatest.RealBrokers()) == 0 {
		t.Skipf("needs a real broker (%s)", kafkatest.EnvBrokers)
	}
	env := kafkatest.New(t)
	c := newTestConsumer(t, env, env.Group(), "")
	defer c.Close()
	c.subscribe([]string{"bad topic!"}, processor.RebalanceCallbacks{})
	err := pollError(t, c, `the broker's refusal of "bad topic!"`)
	if !errors.Is(err, sarama.ErrInvalidTopic) || !strings.Contains(err.Error(), "bad topic!") {
		t.Fatalf("Poll error = %v, want one wrapping sarama.ErrInvalidTopic that names \"bad topic!\"", err)
	}
}

// observed returns a logger that writes to the test's log and to an observer,
// and a notifier that fires on every entry.
func observed(t *testing.T) (*zap.Logger, *observer.ObservedLogs, *await.Notifier) {
	core, logs := observer.New(zapcore.DebugLevel)
	n := &await.Notifier{}
	hooked := zapcore.RegisterHooks(core, func(zapcore.Entry) error { n.Notify(); return nil })
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), hooked)), logs, n
}

const waitingMessage = "kafka: waiting for subscribed topics to be created; the consumer does not create them"

func TestConsumerWaitsForAMissingTopicWithoutCreatingIt(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Name("topic")
	log, logs, n := observed(t)
	sc := kafkatest.SaramaConfig()
	// One metadata request per attempt, so that attempts come much faster than
	// the log interval and the log's rate limit is what the test sees.
	sc.Metadata.Retry.Max = 0
	const interval = 300 * time.Millisecond
	c, err := NewConsumer(ConsumerConfig{
		Brokers: env.Brokers, GroupID: env.Group(), Sarama: sc, Logger: log,
		MissingTopicLogInterval: interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.retryBackoff = 10 * time.Millisecond
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	waiting := func() []observer.LoggedEntry { return logs.FilterMessage(waitingMessage).All() }
	await.Until(t, n, waitFor, "three logs of the wait for "+topic, func() bool { return len(waiting()) >= 3 })

	entries := waiting()
	for i, e := range entries {
		if e.Level != zapcore.WarnLevel {
			t.Errorf("wait log %d is at %s, want warn", i, e.Level)
		}
		if got := e.ContextMap()["missing"]; len(got.([]any)) != 1 || got.([]any)[0] != topic {
			t.Errorf("wait log %d names %v as missing, want [%s]", i, got, topic)
		}
		if i > 0 {
			if gap := e.Time.Sub(entries[i-1].Time); gap < interval {
				t.Errorf("wait logs %d and %d are %s apart, want at least the interval %s", i-1, i, gap, interval)
			}
		}
	}
	if retries := logs.FilterMessage("kafka: subscribed topics still missing; retrying").Len(); retries < len(entries) {
		t.Errorf("%d attempts went unlogged against %d wait logs; the test does not show the rate limit", retries, len(entries))
	}
	if exists, err := env.Client.TopicExists(env.Context(waitFor), topic); err != nil || exists {
		t.Fatalf("TopicExists(%s) = %v, %v after the consumer asked for it; want false: consumers must not create topics", topic, exists, err)
	}

	env.CreateTopic(topic, 2)
	produce(t, env, topic, indexes(2), 5)
	for _, msg := range pollN(t, c, 10, "the messages of the topic created after Subscribe") {
		checkValue(t, msg)
	}
	if logs.FilterMessage("kafka: the subscribed topics exist now; consuming").Len() != 1 {
		t.Errorf("the end of the wait was not logged once")
	}
}
