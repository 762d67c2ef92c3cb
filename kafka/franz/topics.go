package franz

// The topic waiter. It runs on a goroutine of its own, which Subscribe starts and
// Close ends through the reader's context; it reads cfg, log and topicRetry,
// which do not change once subscribed, and owns its Wait. It only logs: kgo
// consumes the subscribed topics that exist and picks up the others when its
// metadata shows them. An answer that names a topic invalid fails the consumer
// through ev.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/topicwait"
)

// topicRetry is the default spacing of the topic waiter's looks, as package
// kafka's consumer retries joining once a second.
const topicRetry = time.Second

// waitForTopics asks the cluster every topicRetry which of topics do not exist,
// logging the wait, until they all do or ctx ends.
func (c *Consumer) waitForTopics(ctx context.Context, cl *kgo.Client, topics []string) {
	defer close(c.waitEnd)
	var wait topicwait.Wait
	t := time.NewTimer(c.topicRetry)
	defer t.Stop()
	for {
		missing, err := missingTopics(ctx, cl, topics)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, kerr.InvalidTopicException):
			// The broker's rules can be stricter than ValidateTopic's, and a
			// name it refuses now it refuses for ever.
			c.fail(fmt.Errorf("franz: the broker refuses a topic of %v as invalid: %w", topics, err))
			return
		case err != nil:
			c.log.Debug("franz: cannot tell whether the subscribed topics exist; retrying", zap.Strings("topics", topics), zap.Error(err))
		case len(missing) == 0:
			wait.Over(c.log)
			return
		default:
			wait.Missing(c.log, c.cfg.MissingTopicLogInterval, missing)
		}
		t.Reset(c.topicRetry)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// missingTopics returns the topics the cluster says do not exist. Its metadata
// request never asks the broker to create them.
func missingTopics(ctx context.Context, cl *kgo.Client, topics []string) ([]string, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	for _, topic := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, rt := range resp.Topics {
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		}
		switch err := kerr.ErrorForCode(rt.ErrorCode); {
		case err == nil:
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			missing = append(missing, name)
		default:
			return nil, fmt.Errorf("topic %q: %w", name, err)
		}
	}
	return missing, nil
}
