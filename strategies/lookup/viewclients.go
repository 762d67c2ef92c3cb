package lookup

import (
	"errors"
	"io"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
)

// ViewClients builds the sarama clients of a goka View and closes them once the View
// has stopped: goka's View.Run leaves its consumer and topic manager open, so without
// it every View leaks connections and goroutines. It is safe for concurrent use.
type ViewClients struct {
	mu      sync.Mutex
	clients []io.Closer
}

// Options returns the goka.NewView options that build the View's consumer and topic
// managers from a copy of cfg and tmc, and remember them for Close. A nil tmc means
// goka.NewTopicManagerConfig(). cfg.Version must be at least what the brokers need
// (the in-process test broker rejects anything below 0.11).
func (c *ViewClients) Options(cfg *sarama.Config, tmc *goka.TopicManagerConfig) []goka.ViewOption {
	if tmc == nil {
		tmc = goka.NewTopicManagerConfig()
	}
	return []goka.ViewOption{
		goka.WithViewConsumerSaramaBuilder(func(brokers []string, clientID string) (sarama.Consumer, error) {
			cc := *cfg
			cc.ClientID = clientID
			consumer, err := sarama.NewConsumer(brokers, &cc)
			if err != nil {
				return nil, err
			}
			c.track(consumer)
			return consumer, nil
		}),
		goka.WithViewTopicManagerBuilder(func(brokers []string) (goka.TopicManager, error) {
			cc := *cfg
			tm, err := goka.NewTopicManager(brokers, &cc, tmc)
			if err != nil {
				return nil, err
			}
			c.track(tm)
			return tm, nil
		}),
	}
}

func (c *ViewClients) track(client io.Closer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients = append(c.clients, client)
}

// Close closes every client built so far. Call it after the View's Run has returned;
// the View still reads through them until then.
func (c *ViewClients) Close() error {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	var errs []error
	for _, client := range clients {
		// goka closes the topic manager it only needs while building the View.
		if err := client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
