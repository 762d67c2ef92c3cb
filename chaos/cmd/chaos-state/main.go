// Command chaos-state is the keyed-state process of the chaos suite: a
// StreamProcessor on the franz-go backend that counts its input's messages by key
// with state.Count, keeping its stores in LevelDB under -dir and its changes in the
// compacted -changelog topic. The suite kills it with SIGKILL, restarts it on the
// same directory, adds and removes members, and then reads the counts back from the
// changelog; with -reapply the offset check is off and replayed messages count
// again.
//
// The process exits 0 after a clean shutdown on SIGTERM and 1, with the error on
// stderr, if the processor fails.
//
//	chaos-state -brokers 127.0.0.1:9092 -topic in -group g -changelog in-counts -dir /tmp/m0
package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/chaos/internal/member"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
)

type options struct {
	brokers, topic, group, changelog, dir string
	reapply                               bool
	commitInterval, session               time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "bootstrap brokers host:port, comma-separated")
	flag.StringVar(&o.topic, "topic", "", "input topic, keyed")
	flag.StringVar(&o.group, "group", "", "consumer group")
	flag.StringVar(&o.changelog, "changelog", "", "compacted changelog topic, as many partitions as the input")
	flag.StringVar(&o.dir, "dir", "", "directory of the LevelDB stores")
	flag.BoolVar(&o.reapply, "reapply", false, "turn the offset check off: replayed messages count again")
	flag.DurationVar(&o.commitInterval, "commit-interval", 500*time.Millisecond, "CommitPolicy.MinInterval")
	flag.DurationVar(&o.session, "session-timeout", 6*time.Second, "group session timeout")
	flag.Parse()

	member.Main("chaos-state", func(ctx context.Context, log *zap.Logger) error { return run(ctx, o, log) })
}

func run(ctx context.Context, o options, log *zap.Logger) error {
	if o.brokers == "" || o.topic == "" || o.group == "" || o.changelog == "" || o.dir == "" {
		return errors.New("chaos-state: -brokers, -topic, -group, -changelog and -dir are required")
	}
	brokers := strings.Split(o.brokers, ",")
	cl, err := state.NewKafkaChangelog(o.changelog, kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ccfg := member.Franz(o.session, 200*time.Millisecond)
	ccfg.Brokers, ccfg.GroupID, ccfg.Logger = brokers, o.group, log.Named("consumer")
	consumer, err := franz.NewConsumer(ccfg)
	if err != nil {
		return err
	}
	counts := state.Count(pipeline.FromKafka(), state.Config[int64]{
		Name: "chaos-counts", Changelog: cl, Dir: o.dir, ReapplyReplayed: o.reapply, Logger: log.Named("state"),
	}, state.KafkaKey)
	p, err := processor.New(consumer, pipeline.Commit(counts), processor.Config[processor.KafkaPayload]{
		Topics:       []string{o.topic},
		CommitPolicy: processor.CommitPolicy{MinInterval: o.commitInterval},
		PollTimeout:  100 * time.Millisecond,
		JoinTimeout:  5 * time.Second,
		Logger:       log.Named("processor"),
	})
	if err != nil {
		_ = consumer.Close()
		return err
	}
	return p.Run(ctx)
}
