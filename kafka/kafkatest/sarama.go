package kafkatest

import (
	"time"

	"github.com/IBM/sarama"
)

// SaramaConfig returns sarama client settings for tests: protocol version 2.8 and
// group timings short enough that joins and rebalances show within tenths of a
// second on the in-process broker and on a real one alike.
func SaramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	sc.Consumer.Group.Session.Timeout = 6 * time.Second
	sc.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Metadata.Retry.Backoff = 50 * time.Millisecond
	return sc
}
