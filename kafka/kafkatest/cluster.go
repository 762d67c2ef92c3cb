package kafkatest

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster is an in-process Kafka broker listening on 127.0.0.1.
type Cluster struct {
	kf *kfake.Cluster
}

// ClusterOption configures Start.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	partitions int32
	topics     []string
}

// WithPartitions sets the number of partitions of automatically created topics
// and of topics given with WithTopics. The default is 4.
func WithPartitions(n int32) ClusterOption {
	return func(c *clusterConfig) { c.partitions = n }
}

// WithTopics creates the topics when the broker starts.
func WithTopics(topics ...string) ClusterOption {
	return func(c *clusterConfig) { c.topics = append(c.topics, topics...) }
}

// Start starts an in-process broker on a free port of 127.0.0.1. Topics are also
// created on first use. Close stops it.
func Start(opts ...ClusterOption) (*Cluster, error) {
	cfg := clusterConfig{partitions: 4}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.partitions < 1 {
		return nil, fmt.Errorf("kafkatest: partitions must be at least 1, got %d", cfg.partitions)
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(cfg.partitions)),
	}
	if len(cfg.topics) > 0 {
		kopts = append(kopts, kfake.SeedTopics(cfg.partitions, cfg.topics...))
	}
	kf, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: start in-process broker: %w", err)
	}
	return &Cluster{kf: kf}, nil
}

// Addrs returns the host:port addresses to give a client as bootstrap brokers.
func (c *Cluster) Addrs() []string { return c.kf.ListenAddrs() }

// Close stops the broker and drops everything it stored.
func (c *Cluster) Close() { c.kf.Close() }

// ControlKey runs fn on each request of kind key (a kmsg.Key) the broker
// receives, until fn handles one: a handled request gets fn's response, or its
// connection is closed if fn returns an error. fn returning false lets the
// broker answer as usual, which is how a test observes requests. Tests use it
// to inject faults, such as a Heartbeat answered with an error code.
func (c *Cluster) ControlKey(key int16, fn func(kmsg.Request) (kmsg.Response, error, bool)) {
	c.kf.ControlKey(key, fn)
}

// KeepControl, called inside a ControlKey function, keeps the function for later
// requests even though it handled this one.
func (c *Cluster) KeepControl() { c.kf.KeepControl() }

// NewOn returns an Env on c, for tests that need a broker they can inject faults
// into; c is not closed for them.
func NewOn(t testing.TB, c *Cluster) *Env {
	t.Helper()
	cl, err := NewClient(c.Addrs())
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(cl.Close)
	return &Env{Brokers: c.Addrs(), Client: cl, t: t}
}
