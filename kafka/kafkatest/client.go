package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Client performs the setup and checks of a test against any broker: topic
// admin, producing, reading back and offset queries. It is safe for concurrent
// use.
type Client struct {
	brokers []string
	kgo     *kgo.Client
	adm     *kadm.Client
}

// NewClient returns a Client for the given bootstrap brokers. It does not
// connect until first used.
func NewClient(brokers []string) (*Client, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafkatest: no brokers given")
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		// Records produced by tests must land on the partition they name.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: new client: %w", err)
	}
	return &Client{brokers: brokers, kgo: cl, adm: kadm.NewClient(cl)}, nil
}

// Brokers returns the bootstrap brokers the client was made with.
func (c *Client) Brokers() []string { return c.brokers }

// Close closes the connections.
func (c *Client) Close() { c.kgo.Close() }

// Ping waits until a broker answers a metadata request or ctx is done.
func (c *Client) Ping(ctx context.Context) error {
	// A broker that is still starting refuses connections at once; retry at a
	// modest pace rather than spinning.
	const retry = 200 * time.Millisecond
	for {
		err := c.kgo.Ping(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kafkatest: broker %v did not answer: %w", c.brokers, err)
		case <-t.C:
		}
	}
}

// CreateTopic creates topic with the given number of partitions and a
// replication factor of one.
func (c *Client) CreateTopic(ctx context.Context, topic string, partitions int32) error {
	if _, err := c.adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		return fmt.Errorf("kafkatest: create topic %s: %w", topic, err)
	}
	return nil
}

// TopicExists reports whether the cluster has topic. Its metadata request never
// creates the topic, whatever the broker's auto.create.topics.enable says.
func (c *Client) TopicExists(ctx context.Context, topic string) (bool, error) {
	details, err := c.adm.ListTopics(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("kafkatest: look up topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return false, nil
	case d.Err != nil:
		return false, fmt.Errorf("kafkatest: look up topic %s: %w", topic, d.Err)
	}
	return true, nil
}

// DeleteTopic deletes topic.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	resp, err := c.adm.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("kafkatest: delete topic %s: %w", topic, err)
	}
	return nil
}

// Produce writes records synchronously, each to the partition it names.
func (c *Client) Produce(ctx context.Context, records ...*kgo.Record) error {
	if err := c.kgo.ProduceSync(ctx, records...).FirstErr(); err != nil {
		return fmt.Errorf("kafkatest: produce: %w", err)
	}
	return nil
}

// Read reads topic from the start until it has n records or ctx is done, and
// returns what it read.
func (c *Client) Read(ctx context.Context, topic string, n int) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: new reader: %w", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollRecords(ctx, n-len(out))
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("kafkatest: read %s: got %d of %d records: %w", topic, len(out), n, err)
		}
		if err := fs.Err0(); err != nil {
			return out, fmt.Errorf("kafkatest: read %s: %w", topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out, nil
}

// CommittedOffsets returns the offsets group has committed for topic, by
// partition. Partitions without a commit are absent.
func (c *Client) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	resp, err := c.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	// Some brokers answer for a group that never committed with an error, others
	// with nothing: both mean no offsets.
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kafkatest: fetch offsets of group %s: %w", group, err)
	}
	out := make(map[int32]int64)
	for p, o := range resp[topic] {
		if o.At >= 0 {
			out[p] = o.At
		}
	}
	return out, nil
}

// EndOffsets returns the offset the next record of each partition of topic will
// get.
func (c *Client) EndOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	resp, err := c.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafkatest: list end offsets of %s: %w", topic, err)
	}
	out := make(map[int32]int64)
	for p, o := range resp[topic] {
		out[p] = o.Offset
	}
	return out, nil
}
