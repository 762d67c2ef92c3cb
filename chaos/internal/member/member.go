// Package member holds what every process of the chaos suite shares: how it
// starts and stops, and group timings short enough for a killed member's
// partitions to move to another within seconds.
package member

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/processor"
)

// Main runs run under a context that SIGINT and SIGTERM cancel and exits: 0 when
// run returns nil, 1 with the error on stderr otherwise. name prefixes what it
// prints.
func Main(name string, run func(ctx context.Context, log *zap.Logger) error) {
	logger, err := zap.NewDevelopment(zap.IncreaseLevel(zap.InfoLevel))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	ctx, stop := processor.SignalContext(context.Background())
	err = run(ctx, logger)
	stop()
	_ = logger.Sync()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: exiting: %v\n", name, err)
		os.Exit(1)
	}
}

// Franz returns a franz-go consumer configuration that reads from the earliest
// offset with the group session timeout session and fetches that wait at most
// fetchWait. The caller sets the brokers, the group and the assignor.
func Franz(session, fetchWait time.Duration) franz.ConsumerConfig {
	return franz.ConsumerConfig{
		InitialOffset:     kafka.OffsetEarliest,
		SessionTimeout:    session,
		HeartbeatInterval: session / 10,
		RebalanceTimeout:  2 * session,
		ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(fetchWait)},
	}
}

// Sarama returns a sarama configuration with the group timings of Franz and
// fetches that wait at most 100 ms.
func Sarama(session time.Duration) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Consumer.Group.Heartbeat.Interval = session / 10
	sc.Consumer.Group.Session.Timeout = session
	sc.Consumer.Group.Rebalance.Timeout = 2 * session
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	return sc
}
