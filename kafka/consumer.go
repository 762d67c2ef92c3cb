package kafka

// Consumer's code is split by the goroutine it runs on:
//
//   - consumer_group.go runs on sarama's goroutines: the Consume loop, the
//     ConsumerGroupHandler callbacks and a reader per claimed partition.
//   - consumer_poll.go runs on the processor's loop, the goroutine that calls Poll.
//   - this file holds the type and its lifecycle: NewConsumer, and Subscribe and
//     Close, which the loop calls too.
//   - commit.go and fetch.go run on whichever goroutine calls Commit or Fetch.
//   - lag.go runs on the refresher goroutine Subscribe starts, and answers
//     Watermarks on the loop.
//
// The struct's first group of fields, cfg to closing, is set by NewConsumer, never
// reassigned after Subscribe and read from every goroutine (Instrument, which runs
// before Subscribe, may replace log, given and cfg.Logger); its channels (queue,
// free, closing) and ev, the mailbox of package poll, are how the two sides reach
// each other. mu guards session, announced, revoking, nextEpoch and closed, the
// state sarama's goroutines share; they post to ev while holding it, so that
// events reach the loop in the order they happened. The loop alone owns poller
// (the assignment, pauses and batches as the loop knows them), subscribed, and
// stop, consumeEnd, errorsEnd and refreshEnd, which Subscribe sets and Close
// waits on (consume, drainErrors and the refresher close them as they return);
// closeOnce and closeErr are Close's. marks, the claimed partitions' high
// watermarks, has a lock of its own. fetchMu guards fetcher; calls counts the
// Commit and Fetch calls Close waits for. retryBackoff, which tests shorten
// before Subscribe, and the atomic waitingForTopics, which consume sets and the
// handler's Setup clears, are the group side's alone.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/poll"
	"github.com/creekstream/creek/kafka/internal/watermarks"
	"github.com/creekstream/creek/processor"
)

// ErrNotSubscribed is returned by Poll before Subscribe.
var ErrNotSubscribed = errors.New("kafka: consumer is not subscribed")

// ErrNoSession is returned by Commit when the consumer is not currently a member
// of a group generation, such as before the first assignment.
var ErrNoSession = errors.New("kafka: consumer has no group session to commit in")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("kafka: consumer is closed")

// Consumer reads a consumer group through sarama and hands its messages out one
// at a time from Poll, as processor.StreamProcessor expects.
//
// sarama reads every claimed partition on its own goroutine. Those goroutines take
// whatever their claim has ready, up to maxBatch messages, and put it on a bounded
// queue as one batch; they block when it is full, so a slow processor slows
// fetching down. Poll hands out the current batch from a plain slice: moving each
// message through a channel of its own cost more than the whole processor loop.
// Assignment changes do not travel on that queue: sarama's goroutines record them
// under the mutex as events, which Poll turns into RebalanceCallbacks calls on the
// caller's goroutine. A revoked partition is held by its reader until OnRevoke has
// run (or RevokeTimeout passed), and queued messages of a revoked partition are
// dropped. An eager rebalance reaches OnRevoke as one call for the whole
// assignment; under the cooperative protocol the moving partitions' readers stop
// independently, so their revocation may arrive split over several calls.
//
// Instrument, Subscribe, Poll, Buffered, Pause, Resume, Paused, Assignment, Commit,
// Fetch and Close belong to one goroutine, the processor's loop; Commit and Fetch
// may also be called from others.
type Consumer struct {
	// Set by NewConsumer and never changed once subscribed.
	cfg ConsumerConfig
	log *zap.Logger
	// given is what ConsumerConfig set, completed by Instrument.
	given  processor.Instruments
	client sarama.Client
	group  sarama.ConsumerGroup
	// commits is a client of its own for Commit: a broker answers the requests of
	// one connection in order, so on the readers' connection a commit waits behind
	// a fetch that is waiting for data (up to Consumer.MaxWaitTime, 500 ms), as the
	// final commit of every shutdown did.
	commits     sarama.Client
	cooperative bool
	// retryBackoff is the pause between a failed Consume and the next; tests
	// shorten it.
	retryBackoff time.Duration
	// waitingForTopics is set while Consume fails for missing topics, so that the
	// session that follows says the wait is over.
	waitingForTopics atomic.Bool
	// refreshInterval spaces the ListOffsets that refresh marks: 0 means
	// watermarks.RefreshInterval; tests shorten it.
	refreshInterval time.Duration
	// marks holds the high watermark and starting offset of every claim, for
	// Watermarks (lag.go).
	marks watermarks.Table

	// queue carries batches from the partition readers to Poll; free returns their
	// slices for reuse. batchSize bounds a batch.
	queue     chan batch
	free      chan []*sarama.ConsumerMessage
	batchSize int
	// ev carries assignment changes and a fatal error to the loop.
	ev *poll.Events
	// closing is closed by Close so that readers stop waiting for Poll.
	closing chan struct{}

	// Close's own.
	closeOnce sync.Once
	closeErr  error

	// mu guards the state shared by sarama's goroutines and the loop.
	mu        sync.Mutex
	session   sarama.ConsumerGroupSession
	announced map[processor.Partition]uint64           // told (or about to be told) to the loop, with epoch
	revoking  map[processor.Partition]*poll.Revocation // revocations the loop has not handled yet
	nextEpoch uint64
	closed    bool // set by Close before it waits for calls

	// The loop's own state, touched only by the goroutine calling Poll.
	poller     *poll.Poller[*sarama.ConsumerMessage]
	subscribed bool

	// Set by Subscribe and waited on by Close, both on the loop.
	stop       context.CancelFunc // ends the Consume loop
	consumeEnd chan struct{}      // closed when the Consume loop has returned
	errorsEnd  chan struct{}      // closed when the group's error channel is drained
	refreshEnd chan struct{}      // closed when the watermark refresher has returned

	// calls counts Commit and Fetch requests still talking to a broker, so that
	// Close can wait for them before it closes the client.
	calls   sync.WaitGroup
	fetchMu sync.Mutex // guards fetcher and serialises Fetch: sarama allows one reader per partition
	fetcher sarama.Consumer
}

// batch is a run of messages a partition reader took from its claim at once, all
// of one partition, stamped with the claim's epoch.
type batch = poll.Batch[*sarama.ConsumerMessage]

// maxBatch bounds a batch: large enough that the queue's cost per message is
// small, small enough that a batch is a fraction of the default queue bound.
const maxBatch = 256

var (
	_ processor.Consumer[processor.KafkaPayload] = (*Consumer)(nil)
	_ processor.Fetcher[processor.KafkaPayload]  = (*Consumer)(nil)
	_ processor.Instrumented                     = (*Consumer)(nil)
)

// NewConsumer validates cfg and connects to the cluster. It joins the group only
// on Subscribe.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	given := processor.Instruments{Logger: cfg.Logger}
	cfg, sc, err := cfg.build()
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: connect to %v: %w", cfg.Brokers, err)
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.GroupID, client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kafka: consumer group %s: %w", cfg.GroupID, err)
	}
	commits, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		_ = group.Close()
		_ = client.Close()
		return nil, fmt.Errorf("kafka: connect to %v for commits: %w", cfg.Brokers, err)
	}
	// The queue holds ChannelBufferSize messages, rounded up to whole batches of
	// at most batchSize.
	batchSize := min(maxBatch, cfg.ChannelBufferSize)
	queued := (cfg.ChannelBufferSize + batchSize - 1) / batchSize
	c := &Consumer{
		cfg:          cfg,
		log:          cfg.Logger.With(zap.String("group", cfg.GroupID)),
		given:        given,
		client:       client,
		commits:      commits,
		group:        group,
		cooperative:  cfg.Assignor == AssignorCooperativeSticky,
		retryBackoff: retryBackoff,
		queue:        make(chan batch, queued),
		free:         make(chan []*sarama.ConsumerMessage, queued+1),
		batchSize:    batchSize,
		ev:           poll.NewEvents(),
		closing:      make(chan struct{}),
		announced:    make(map[processor.Partition]uint64),
		revoking:     make(map[processor.Partition]*poll.Revocation),
	}
	c.poller = poll.NewPoller(c.ev, poll.Client[*sarama.ConsumerMessage]{
		Queue:    c.queue,
		Closing:  c.closing,
		Closed:   ErrClosed,
		Pause:    group.Pause,
		Resume:   group.Resume,
		Released: c.released,
		Recycle:  c.recycle,
	})
	return c, nil
}

// Instrument gives the consumer the processor's logger if ConsumerConfig.Logger was
// unset. processor.New calls it. Like Subscribe it belongs to the loop's goroutine,
// and it does nothing once the consumer has subscribed, because the group's
// goroutines read the logger from then on.
func (c *Consumer) Instrument(inst processor.Instruments) {
	if c.subscribed || c.given.Logger != nil || inst.Logger == nil {
		return
	}
	c.given = c.given.Or(inst)
	c.cfg.Logger = c.given.Logger
	c.log = c.given.Logger.With(zap.String("group", c.cfg.GroupID))
}

// Subscribe joins the group for topics. It may be called once. A name that
// cannot be a Kafka topic (see ValidateTopic) fails it at once. Topics that do not
// exist yet are waited for: the group is joined once all of them exist, and
// until then the wait is logged every MissingTopicLogInterval; the consumer never
// creates them.
func (c *Consumer) Subscribe(topics []string, cb processor.RebalanceCallbacks) error {
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	if c.subscribed {
		return errors.New("kafka: Subscribe called twice; a Consumer subscribes once")
	}
	if len(topics) == 0 {
		return errors.New("kafka: Subscribe needs at least one topic")
	}
	var invalid []error
	for _, topic := range topics {
		if err := ValidateTopic(topic); err != nil {
			invalid = append(invalid, err)
		}
	}
	if len(invalid) > 0 {
		return errors.Join(invalid...)
	}
	c.subscribe(topics, cb)
	return nil
}

// subscribe is Subscribe after the checks, which tests skip to reach the broker
// with a name the client would refuse.
func (c *Consumer) subscribe(topics []string, cb processor.RebalanceCallbacks) {
	c.subscribed = true
	c.poller.Start(cb, c.log)
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.consumeEnd = make(chan struct{})
	c.errorsEnd = make(chan struct{})
	c.refreshEnd = make(chan struct{})
	topics = slices.Clone(topics)
	go c.consume(ctx, topics)
	go c.drainErrors()
	go c.refreshWatermarks()
}

// Close leaves the group, stops every goroutine the consumer started and closes
// its connections. Partitions are released without OnRevoke: the processor joins
// its strategy, committing, before it closes the consumer.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		var errs []error
		if c.subscribed {
			c.stop()
			<-c.consumeEnd
		}
		if err := c.group.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kafka: leave group %s: %w", c.cfg.GroupID, err))
		}
		if c.subscribed {
			<-c.errorsEnd
			<-c.refreshEnd
		}
		c.calls.Wait()
		if c.fetcher != nil {
			if err := c.fetcher.Close(); err != nil {
				errs = append(errs, fmt.Errorf("kafka: close fetcher: %w", err))
			}
		}
		if err := c.commits.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kafka: close commit client: %w", err))
		}
		if err := c.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("kafka: close client: %w", err))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// beginCall registers a Commit or Fetch that Close must wait for; the caller
// calls c.calls.Done when it is finished.
func (c *Consumer) beginCall() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.calls.Add(1)
	return nil
}
