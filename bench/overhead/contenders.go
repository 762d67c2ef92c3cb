package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// contender consumes the topic once with a fresh group and calls c.add for every
// message it handles. It returns once c.done is closed and everything it started
// has stopped and committed. If it ends before, the caller sees that from the
// count.
type contender struct {
	name string
	run  func(ctx context.Context, e runEnv) error
}

// runEnv is what one run of a contender gets.
type runEnv struct {
	brokers []string
	topic   string
	group   string
	// sarama returns a fresh copy of the settings every contender shares.
	sarama func() *sarama.Config
	count  *counter
}

var contenders = []contender{
	{"creek", runCreek},
	{"sarama", runSarama},
	{"goka", runGoka},
	{"creek-franz", runCreekFranz},
	{"franz", runFranz},
}

func contenderNames() []string {
	names := make([]string, len(contenders))
	for i, c := range contenders {
		names[i] = c.name
	}
	return names
}

func contenderByName(name string) (contender, bool) {
	for _, c := range contenders {
		if c.name == name {
			return c, true
		}
	}
	return contender{}, false
}

// baseSarama is the sarama configuration every contender runs with: sarama's
// defaults (fetch sizes, a channel buffer of 256 per partition), the protocol
// version creek's consumer defaults to, and reading a new group from the start.
func baseSarama() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "creek-bench"
	c.Version = sarama.V2_8_0_0
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

// counter counts handled messages and notes, as offsets from its creation on the
// monotonic clock, when the contender's group assignment came and when the first
// and the target-th message were handled. add and assigned may be called from any
// goroutine.
type counter struct {
	target int64
	base   time.Time
	n      atomic.Int64
	// join is the offset of the first assignment plus one, so that 0 means none yet.
	join  atomic.Int64
	first atomic.Int64
	last  atomic.Int64
	done  chan struct{}
}

func newCounter(target int) *counter {
	return &counter{target: int64(target), base: time.Now(), done: make(chan struct{})}
}

// assigned notes that the contender's consumer has its partitions; only the first
// call counts. Each contender calls it from the first place its own code learns of
// the assignment (see runOnce), before anything can have been fetched for it.
func (c *counter) assigned() {
	c.join.CompareAndSwap(0, int64(time.Since(c.base))+1)
}

func (c *counter) add() {
	n := c.n.Add(1)
	if n == 1 {
		c.first.Store(int64(time.Since(c.base)))
	}
	if n == c.target {
		c.last.Store(int64(time.Since(c.base)))
		close(c.done)
	}
}

// joined returns the time from the counter's creation to the assignment, and
// whether one was noted.
func (c *counter) joined() (time.Duration, bool) {
	j := c.join.Load()
	return time.Duration(j - 1), j != 0
}

// consumed returns the time from the assignment to the target-th message; valid
// once done is closed and an assignment was noted.
func (c *counter) consumed() time.Duration {
	j, _ := c.joined()
	return time.Duration(c.last.Load()) - j
}

// span returns the time from the first message to the target-th; valid once done
// is closed.
func (c *counter) span() time.Duration { return time.Duration(c.last.Load() - c.first.Load()) }

// wall returns the time from the counter's creation to the target-th message.
func (c *counter) wall() time.Duration { return time.Duration(c.last.Load()) }

// runCreek consumes with a StreamProcessor running RunTask(identity) ->
// CommitOffsets, the chain DESIGN.md names for this comparison, on the sarama
// backend.
func runCreek(ctx context.Context, e runEnv) error {
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: e.brokers,
		GroupID: e.group,
		Sarama:  e.sarama(),
	})
	if err != nil {
		return err
	}
	return runCreekOn(ctx, e, consumer)
}

// runCreekFranz is runCreek on the franz-go backend.
func runCreekFranz(ctx context.Context, e runEnv) error {
	consumer, err := franz.NewConsumer(franz.ConsumerConfig{
		Brokers:       e.brokers,
		GroupID:       e.group,
		ClientID:      "creek-bench",
		InitialOffset: kafka.OffsetEarliest,
	})
	if err != nil {
		return err
	}
	return runCreekOn(ctx, e, consumer)
}

func runCreekOn(ctx context.Context, e runEnv, consumer processor.Consumer[processor.KafkaPayload]) error {
	identity := func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		e.count.add()
		return m.Payload, nil
	}
	// The processor creates the strategy in its OnAssign callback, as soon as the
	// consumer reports the assignment to the loop.
	factory := processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
		e.count.assigned()
		return strategies.NewRunTask(identity, processor.Strategy[processor.KafkaPayload](strategies.NewCommitOffsets[processor.KafkaPayload](commit))), nil
	})
	p, err := processor.New(consumer, factory, processor.Config[processor.KafkaPayload]{Topics: []string{e.topic}})
	if err != nil {
		_ = consumer.Close()
		return err
	}
	return runUntilCounted(ctx, e, p.Run)
}

// runFranz is the bare franz-go loop: poll fetches, count every record, let kgo's
// auto-commit send offsets meanwhile, as most kgo consumers do, and commit the
// rest at the end.
func runFranz(ctx context.Context, e runEnv) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.brokers...),
		kgo.ClientID("creek-bench"),
		kgo.ConsumerGroup(e.group),
		kgo.ConsumeTopics(e.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// kgo calls it after the group's SyncGroup and before it fetches the
		// committed offsets, so nothing of the assignment is fetched yet.
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { e.count.assigned() }),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		select {
		case <-e.count.done:
			return cl.CommitUncommittedOffsets(ctx)
		default:
		}
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(topic string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", topic, p, err))
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(*kgo.Record) { e.count.add() })
	}
}

// runSarama is the bare consumer-group loop: mark every message and let sarama's
// auto-commit send the marks once a second, as most sarama consumers do.
func runSarama(ctx context.Context, e runEnv) error {
	group, err := sarama.NewConsumerGroup(e.brokers, e.group, e.sarama())
	if err != nil {
		return err
	}
	consumeCtx, stop := context.WithCancel(ctx)
	defer stop()
	ended := make(chan error, 1)
	go func() {
		h := markingHandler{count: e.count}
		for {
			if err := group.Consume(consumeCtx, []string{e.topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				ended <- err
				return
			}
			if consumeCtx.Err() != nil {
				ended <- nil
				return
			}
		}
	}()
	select {
	case <-e.count.done:
		stop()
		err = <-ended
	case err = <-ended:
	}
	// Close commits the last marks.
	return errors.Join(err, group.Close())
}

type markingHandler struct{ count *counter }

// Setup runs once the session has its claims and their committed offsets, before
// any partition consumer starts.
func (h markingHandler) Setup(sarama.ConsumerGroupSession) error {
	h.count.assigned()
	return nil
}

func (markingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h markingHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(msg, "")
			h.count.add()
		case <-sess.Context().Done():
			return nil
		}
	}
}

// runGoka runs a goka processor with one Input edge whose callback only counts.
// goka keeps its own defaults where they are part of how it works (its
// copartitioning assignor, its processing time), and takes the shared version,
// fetch sizes, channel buffer and initial offset.
func runGoka(ctx context.Context, e runEnv) error {
	gokaConfig := func() *sarama.Config {
		base := e.sarama()
		c := goka.DefaultConfig()
		c.Version = base.Version
		c.Consumer.Offsets.Initial = base.Consumer.Offsets.Initial
		c.Consumer.Fetch = base.Consumer.Fetch
		c.ChannelBufferSize = base.ChannelBufferSize
		return c
	}
	discard := log.New(io.Discard, "", 0)
	graph := goka.DefineGroup(goka.Group(e.group),
		goka.Input(goka.Stream(e.topic), new(codec.Bytes), func(goka.Context, any) { e.count.add() }),
	)
	// Every builder gets its own copy: goka's builders write the client ID into it.
	p, err := goka.NewProcessor(e.brokers, graph,
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(gokaConfig())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig())),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), goka.NewTopicManagerConfig())),
		goka.WithStorageBuilder(storage.MemoryBuilder()),
		goka.WithLogger(discard),
		// goka calls it from its Setup, once the session has its claims.
		goka.WithRebalanceCallback(func(goka.Assignment) { e.count.assigned() }),
	)
	if err != nil {
		return fmt.Errorf("goka processor: %w", err)
	}
	return runUntilCounted(ctx, e, p.Run)
}

// runUntilCounted runs a contender until it has counted every message, then stops it
// and returns what its run returned. A run that ends early returns at once; the
// caller reports how far it got.
func runUntilCounted(ctx context.Context, e runEnv, run func(context.Context) error) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- run(runCtx) }()
	select {
	case <-e.count.done:
		stop()
		return <-ended
	case err := <-ended:
		return err
	}
}
