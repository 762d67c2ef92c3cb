package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment variables that point tests at a real broker.
const (
	// EnvBrokers names a real broker as a comma-separated host:port list.
	EnvBrokers = "CREEK_KAFKA_BROKERS"
	// EnvRequireReal, when "1", makes a missing EnvBrokers a test failure.
	EnvRequireReal = "CREEK_REQUIRE_REAL"
)

// setupTimeout bounds each admin call a helper makes on behalf of a test.
const setupTimeout = 30 * time.Second

// RealBrokers returns the brokers named by CREEK_KAFKA_BROKERS, or nil.
func RealBrokers() []string { return brokerList(os.Getenv(EnvBrokers)) }

// brokerList splits a comma-separated host:port list, dropping blanks.
func brokerList(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Brokers returns the bootstrap brokers for a test: the real ones of
// CREEK_KAFKA_BROKERS if set, otherwise a fresh in-process broker that is
// stopped when the test ends. With CREEK_REQUIRE_REAL=1 and no real broker it
// fails the test.
func Brokers(t testing.TB) []string {
	t.Helper()
	if real := RealBrokers(); len(real) > 0 {
		return real
	}
	if os.Getenv(EnvRequireReal) == "1" {
		t.Fatalf("kafkatest: %s=1 but %s is not set; start a broker with scripts/kafka-start and source scripts/.run/kafka.env", EnvRequireReal, EnvBrokers)
	}
	c, err := Start()
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(c.Close)
	return c.Addrs()
}

// Env is a test's view of a broker: its addresses, a Client, and unique topic
// and group names so that tests sharing a real broker do not collide.
type Env struct {
	Brokers []string
	Client  *Client
	// Real reports whether Brokers is a real broker rather than an in-process one.
	Real bool

	t testing.TB
}

// New returns an Env on Brokers(t). Everything it creates is released when the
// test ends; topics on a real broker are deleted.
func New(t testing.TB) *Env {
	t.Helper()
	brokers := Brokers(t)
	cl, err := NewClient(brokers)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(cl.Close)
	return &Env{Brokers: brokers, Client: cl, Real: len(RealBrokers()) > 0, t: t}
}

// Topic creates a topic with a name unique to this test and returns the name.
func (e *Env) Topic(partitions int32) string {
	e.t.Helper()
	name := e.Name("topic")
	e.CreateTopic(name, partitions)
	return name
}

// CreateTopic creates the topic name, typically one from Name that a test
// first used as missing, and deletes it when the test ends on a real broker.
func (e *Env) CreateTopic(name string, partitions int32) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := e.Client.CreateTopic(ctx, name, partitions); err != nil {
		e.t.Fatalf("%v", err)
	}
	if e.Real {
		e.t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			// A leftover topic only costs disk on a throwaway broker; say so and go on.
			if err := e.Client.DeleteTopic(ctx, name); err != nil {
				e.t.Logf("%v", err)
			}
		})
	}
}

// Fill writes n records to each of partitions 0 to partitions-1 of topic, the i-th
// of partition p valued value(p, i), and fails the test if they are not all
// acknowledged within the setup timeout.
func (e *Env) Fill(topic string, partitions int32, n int, value func(p int32, i int) string) {
	e.t.Helper()
	recs := make([]*kgo.Record, 0, int(partitions)*n)
	for p := range partitions {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(value(p, i))})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := e.Client.Produce(ctx, recs...); err != nil {
		e.t.Fatalf("kafkatest: filling %s: %v", topic, err)
	}
}

// Group returns a consumer group name unique to this test.
func (e *Env) Group() string { return e.Name("group") }

// Context returns a context that ends after d or when the test ends.
func (e *Env) Context(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.t.Cleanup(cancel)
	return ctx
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Name returns kind, the test's name and a random suffix joined into a valid,
// unique Kafka topic or group name.
func (e *Env) Name(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	name := unsafeName.ReplaceAllString(e.t.Name(), "_")
	if len(name) > 150 {
		name = name[:150]
	}
	return "creek-" + kind + "-" + name + "-" + hex.EncodeToString(b[:])
}
