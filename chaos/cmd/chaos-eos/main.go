// Command chaos-eos is the consume-transform-produce process of the chaos suite's
// exactly-once case: a StreamProcessor on the franz backend that copies every
// record of the input topic to the output topic. With -txn-id it runs on a
// franz.TxnConsumer and writes through pipeline.Transact, so outputs and input
// offsets are committed in one Kafka transaction; without, it produces with
// pipeline.Produce and commits offsets after the writes are acknowledged (at
// least once). The suite kills it with SIGKILL and reads the output topic with
// read_committed isolation to count every id.
//
// The process exits 0 after a clean shutdown on SIGTERM. After an aborted
// transaction it starts a new consumer and processor, which resume from the last
// committed transaction; any other failure exits 1 with the error on stderr.
//
//	chaos-eos -brokers 127.0.0.1:9092 -in in -out out -group g -txn-id member-a
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/chaos/internal/member"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

type options struct {
	brokers, in, out, group, assignor, txnID string
	commitInterval, session                  time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "bootstrap broker host:port")
	flag.StringVar(&o.in, "in", "", "input topic")
	flag.StringVar(&o.out, "out", "", "output topic")
	flag.StringVar(&o.group, "group", "", "consumer group")
	flag.StringVar(&o.assignor, "assignor", "range", "partition assignor: range or cooperative-sticky")
	flag.StringVar(&o.txnID, "txn-id", "", "transactional id; empty runs at least once, without transactions")
	flag.DurationVar(&o.commitInterval, "commit-interval", 500*time.Millisecond, "CommitPolicy.MinInterval: how often a transaction ends")
	flag.DurationVar(&o.session, "session-timeout", 6*time.Second, "group session timeout")
	flag.Parse()

	member.Main("chaos-eos", func(ctx context.Context, log *zap.Logger) error { return run(ctx, o, log) })
}

func run(ctx context.Context, o options, log *zap.Logger) error {
	if o.brokers == "" || o.in == "" || o.out == "" || o.group == "" {
		return errors.New("chaos-eos: -brokers, -in, -out and -group are required")
	}
	for {
		err := runOnce(ctx, o, log)
		if !errors.Is(err, franz.ErrTxnAborted) || ctx.Err() != nil {
			return err
		}
		log.Warn("chaos-eos: transaction aborted; starting again from the last committed transaction", zap.Error(err))
	}
}

// runOnce runs one consumer and processor until ctx ends or the processor fails.
func runOnce(ctx context.Context, o options, log *zap.Logger) error {
	cfg := member.Franz(o.session, 200*time.Millisecond)
	cfg.Brokers, cfg.GroupID, cfg.Assignor, cfg.Logger = []string{o.brokers}, o.group, o.assignor, log.Named("consumer")
	pcfg := processor.Config[processor.KafkaPayload]{
		Topics:       []string{o.in},
		CommitPolicy: processor.CommitPolicy{MinInterval: o.commitInterval},
		PollTimeout:  100 * time.Millisecond,
		JoinTimeout:  5 * time.Second,
		Logger:       log.Named("processor"),
	}
	if o.txnID != "" {
		c, err := franz.NewTxnConsumer(cfg, franz.TxnConfig{TransactionalID: o.txnID, TransactionTimeout: 10 * time.Second})
		if err != nil {
			return err
		}
		p, err := processor.New(c, pipeline.Transact(pipeline.FromKafka(), c, o.out), pcfg)
		if err != nil {
			_ = c.Close()
			return err
		}
		return p.Run(ctx)
	}
	c, err := franz.NewConsumer(cfg)
	if err != nil {
		return err
	}
	prod, err := franz.NewProducer(franz.ProducerConfig{Brokers: []string{o.brokers}, Logger: log.Named("producer")})
	if err != nil {
		_ = c.Close()
		return err
	}
	p, err := processor.New(c, pipeline.Commit(pipeline.Produce(pipeline.FromKafka(), prod, o.out)), pcfg)
	if err != nil {
		_ = c.Close()
		_ = prod.Close(context.Background())
		return err
	}
	err = p.Run(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, prod.Close(cctx))
}
