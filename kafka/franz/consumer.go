package franz

// Consumer's code is split by the goroutine it runs on:
//
//   - this file holds the type and its lifecycle (NewConsumer, Subscribe and
//     Close, which the processor's loop calls), the reader goroutine Subscribe
//     starts, and kgo's rebalance callbacks, which run on kgo's group goroutine.
//   - poll.go runs on the processor's loop, the goroutine that calls Poll.
//   - commit.go and fetch.go run on whichever goroutine calls Commit or Fetch.
//   - topics.go runs on the topic waiter goroutine Subscribe starts.
//   - lag.go runs on the refresher goroutine Subscribe starts, and answers
//     Watermarks on the loop.
//
// The fields cfg to closing are set by NewConsumer, never reassigned after
// Subscribe and read from every goroutine (Instrument, which runs before
// Subscribe, may replace log, given and cfg.Logger); the channels (queue,
// closing) and ev, the mailbox of package poll, are how the sides reach each
// other. mu guards cl, owned, nextEpoch and closed, which the callbacks, the
// reader, the loop and Commit share; the callbacks post to ev while holding it,
// so that events reach the loop in the order they happened. The loop alone owns
// poller (the assignment, pauses and batches as the loop knows them),
// subscribed, and stop, readEnd, refreshEnd and waitEnd, which Subscribe sets and
// Close waits on (the reader, the refresher and the topic waiter close theirs
// as they return). closeOnce and closeErr are Close's; calls counts the Commit
// and Fetch calls Close waits for. marks, the owned partitions' high
// watermarks, has a lock of its own; it is changed where owned is, and taken
// after mu. topicRetry, which tests shorten before Subscribe, is the topic
// waiter's.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/internal/poll"
	"github.com/creekstream/creek/kafka/internal/watermarks"
	"github.com/creekstream/creek/processor"
)

// ErrNotOwned is returned by Commit for offsets of partitions the consumer does not
// own in the group's current generation, such as lost or already released ones.
var ErrNotOwned = errors.New("franz: partition not owned by this member")

// Consumer reads a consumer group through kgo and hands its messages out one at
// a time from Poll, as processor.StreamProcessor expects.
//
// A reader goroutine polls kgo, turns the records into messages and queues them
// in batches of one partition, in a queue bounded in bytes; Poll hands the
// current batch out from a plain slice, and PollRun hands out runs of it.
// Assignment changes do not travel on that queue: kgo's callbacks record them
// under the mutex as events, which Poll turns into RebalanceCallbacks calls on
// the caller's goroutine. A revoked partition is held by kgo until OnRevoke has
// run (or RevokeTimeout passed); queued messages of a revoked partition are
// dropped.
//
// Instrument, Subscribe, Poll, Buffered, Pause, Resume, Paused, Assignment and
// Close belong to one goroutine, the processor's loop; Commit and Fetch may be
// called from any.
type Consumer struct {
	// Set by NewConsumer and never changed once subscribed.
	cfg ConsumerConfig
	log *zap.Logger
	// given is what ConsumerConfig set, completed by Instrument.
	given       processor.Instruments
	cooperative bool
	// queue carries batches from the reader to Poll. queued is the Bytes of the
	// batches the reader queued that Poll has not used up yet; Poll signals drained
	// as it gives some back, for a reader waiting for room (see read).
	queue   chan batch
	queued  atomic.Int64
	drained chan struct{}
	// free takes back the slices of used-up batches from Poll for the reader to
	// fill again; the reader makes a new one when it is empty.
	free chan []message
	// ev carries assignment changes and a fatal error to the loop.
	ev *poll.Events
	// closing is closed by Close so that the reader and callbacks stop waiting.
	closing chan struct{}
	// topicRetry spaces the topic waiter's looks at the cluster; tests shorten it.
	topicRetry time.Duration
	// refreshInterval spaces the ListOffsets that refresh marks: 0 means
	// watermarks.RefreshInterval; tests shorten it.
	refreshInterval time.Duration
	// marks holds the high watermark and committed offset of every owned
	// partition, for Watermarks (lag.go).
	marks watermarks.Table

	// Close's own.
	closeOnce sync.Once
	closeErr  error

	// mu guards the state shared by kgo's goroutines, the reader, Commit and the
	// loop.
	mu        sync.Mutex
	cl        *kgo.Client                    // the group client, set by Subscribe
	owned     map[processor.Partition]uint64 // owned in the group, with the claim's epoch
	nextEpoch uint64
	closed    bool // set by Close before it waits for calls

	// The loop's own state, touched only by the goroutine calling Poll.
	poller     *poll.Poller[message]
	subscribed bool

	// Set by Subscribe and waited on by Close, both on the loop.
	stop       context.CancelFunc // ends the reader and the topic waiter
	readEnd    chan struct{}      // closed when the reader has returned
	refreshEnd chan struct{}      // closed when the watermark refresher has returned
	waitEnd    chan struct{}      // closed when the topic waiter has returned

	// calls counts Commit and Fetch calls still talking to a broker.
	calls sync.WaitGroup
}

// message is what the reader turns each record into, and what Poll hands out.
type message = processor.Message[processor.KafkaPayload]

// batch is a run of up to runLen messages of one partition that one poll
// returned, stamped with the partition's claim.
type batch = poll.Batch[message]

var (
	_ processor.Consumer[processor.KafkaPayload] = (*Consumer)(nil)
	_ processor.Fetcher[processor.KafkaPayload]  = (*Consumer)(nil)
	_ interface{ Buffered() int }                = (*Consumer)(nil)
	_ processor.Instrumented                     = (*Consumer)(nil)
)

// NewConsumer validates cfg. It connects and joins the group only on Subscribe.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	given := processor.Instruments{Logger: cfg.Logger}
	cfg, err := cfg.build()
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:         cfg,
		log:         cfg.Logger.With(zap.String("group", cfg.GroupID)),
		given:       given,
		cooperative: cfg.Assignor == AssignorCooperativeSticky,
		queue:       make(chan batch, maxQueuedBatches),
		free:        make(chan []message, maxQueuedBatches),
		drained:     make(chan struct{}, 1),
		ev:          poll.NewEvents(),
		closing:     make(chan struct{}),
		owned:       make(map[processor.Partition]uint64),
		topicRetry:  topicRetry,
	}
	c.poller = poll.NewPoller(c.ev, poll.Client[message]{
		Queue:    c.queue,
		Closing:  c.closing,
		Closed:   kafka.ErrClosed,
		Pause:    func(byTopic map[string][]int32) { c.client().PauseFetchPartitions(byTopic) },
		Resume:   func(byTopic map[string][]int32) { c.client().ResumeFetchPartitions(byTopic) },
		Released: c.released,
		Recycle:  c.recycle,
		Done:     c.done,
	})
	return c, nil
}

// Instrument gives the consumer, and the kgo clients it makes, the processor's
// logger if ConsumerConfig.Logger was unset. processor.New calls it. Like Subscribe
// it belongs to the loop's goroutine, and it does nothing once the consumer has
// subscribed, because the client's goroutines read the logger from then on.
func (c *Consumer) Instrument(inst processor.Instruments) {
	if c.subscribed || c.given.Logger != nil || inst.Logger == nil {
		return
	}
	c.given = c.given.Or(inst)
	c.cfg.Logger = c.given.Logger
	c.log = c.given.Logger.With(zap.String("group", c.cfg.GroupID))
}

// Subscribe joins the group for topics. It may be called once. A name that
// cannot be a Kafka topic (see kafka.ValidateTopic) fails it at once. Topics
// that do not exist yet are waited for: kgo consumes those that exist and picks
// the others up once created, and until then the wait is logged every
// MissingTopicLogInterval; the consumer never creates them, and refuses
// ClientOptions that enable kgo.AllowAutoTopicCreation.
func (c *Consumer) Subscribe(topics []string, cb processor.RebalanceCallbacks) error {
	select {
	case <-c.closing:
		return kafka.ErrClosed
	default:
	}
	if c.subscribed {
		return errors.New("franz: Subscribe called twice; a Consumer subscribes once")
	}
	if len(topics) == 0 {
		return errors.New("franz: Subscribe needs at least one topic")
	}
	var invalid []error
	for _, topic := range topics {
		if err := kafka.ValidateTopic(topic); err != nil {
			invalid = append(invalid, err)
		}
	}
	if len(invalid) > 0 {
		return errors.Join(invalid...)
	}
	bal, err := balancer(c.cfg.Assignor)
	if err != nil {
		return err
	}
	opts := clientOpts(c.cfg.ClientOptions, c.cfg.Brokers, c.cfg.ClientID, c.cfg.TLS, c.cfg.SASL, c.cfg.Logger)
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.GroupID),
		kgo.ConsumeTopics(slices.Clone(topics)...),
		kgo.Balancers(bal),
		kgo.ConsumeResetOffset(c.cfg.resetOffset()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
		kgo.RebalanceTimeout(c.cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(c.cfg.HeartbeatInterval),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
	if c.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("franz: client for %v: %w", c.cfg.Brokers, err)
	}
	if auto, _ := cl.OptValue(kgo.AllowAutoTopicCreation).(bool); auto {
		cl.Close()
		return errors.New("franz: ConsumerConfig.ClientOptions enable kgo.AllowAutoTopicCreation; the consumer never creates topics (a mistyped name would be created empty and consumed for ever), so drop the option")
	}
	c.subscribed = true
	c.poller.Start(cb, c.log)
	c.mu.Lock()
	c.cl = cl
	c.mu.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.readEnd = make(chan struct{})
	c.refreshEnd = make(chan struct{})
	c.waitEnd = make(chan struct{})
	go c.read(ctx, cl)
	go c.refreshWatermarks(cl)
	go c.waitForTopics(ctx, cl, slices.Clone(topics))
	return nil
}

// Close leaves the group, stops every goroutine the consumer started and closes
// its connections. Partitions are released without OnRevoke: the processor joins
// its strategy, committing, before it closes the consumer. A leave that takes
// longer than CloseTimeout, as it does while a rebalance is under way, is logged
// and given up on: the broker removes the member when its session times out.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.mu.Lock()
		c.closed = true
		cl := c.cl
		c.mu.Unlock()
		if !c.subscribed {
			return
		}
		c.stop()
		<-c.readEnd
		<-c.refreshEnd
		<-c.waitEnd
		c.calls.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
		defer cancel()
		cl.AllowRebalance()
		switch err := cl.LeaveGroupContext(ctx); {
		case errors.Is(err, context.DeadlineExceeded):
			// kgo leaves only after a join or sync under way has returned, which
			// takes as long as the group's rebalance. The member's session then
			// ends it; nothing the processor did is undone by that.
			c.log.Warn("leaving the group did not finish within CloseTimeout (a rebalance was under way); the broker removes the member when its session times out",
				zap.Duration("close_timeout", c.cfg.CloseTimeout), zap.Duration("session_timeout", c.cfg.SessionTimeout))
		case err != nil:
			c.closeErr = fmt.Errorf("franz: leave group %s: %w", c.cfg.GroupID, err)
		}
		cl.Close()
	})
	return c.closeErr
}

// beginCall registers a Commit or Fetch that Close must wait for; the caller
// calls c.calls.Done when it is finished.
func (c *Consumer) beginCall() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return kafka.ErrClosed
	}
	c.calls.Add(1)
	return nil
}

// The reader queues records until the batches Poll has not used up reach
// maxQueuedBytes, counting each record as its key, value and headers and
// recordOverhead for the rest. kgo sends the next fetch only once the records of
// the last one are all polled from it: with a queue of a few polls (about 4000
// records, a millisecond of the loop's work), the loop and kgo's fetching took
// turns, and creek on franz-go ran at 0.6x the bare kgo loop. 16 MiB holds a
// fetch of kgo's default partition size (1 MiB) from 16 partitions, or about
// 45,000 records of 100 bytes, so the loop works through one fetch while kgo
// fetches the next. For the same reason a poll takes all that kgo has buffered
// unless MaxPollRecords bounds it: taking 1024 records a poll held the next
// fetch back until the loop had made room for the whole last one (0.71x of the
// bare loop over 5M records, against 0.85x taking all; docs/benchmarks.md). So
// the queue can exceed maxQueuedBytes by one fetch, which kgo's FetchMaxBytes
// bounds.
//
// The reader converts the records of a poll into batches of runLen messages as it
// queues them, so that the loop, which hands a run on as it is, does no per-record
// work of its own: that work moves to the reader's goroutine, beside the loop.
// maxQueuedBatches bounds how far ahead of the loop it converts (16k messages),
// so that the messages of a fetch of a whole topic are not all alive at once.
const (
	maxQueuedBytes   = 16 << 20
	recordOverhead   = 256
	maxQueuedBatches = 64
	runLen           = 256
)

// read is the reader goroutine: it polls kgo until ctx ends and queues what it
// gets, while there is room (maxQueuedBytes). Rebalances are blocked from the
// moment PollRecords returns records until the reader has stamped them with their
// claims, and allowed while it waits for room.
func (c *Consumer) read(ctx context.Context, cl *kgo.Client) {
	defer close(c.readEnd)
	defer cl.AllowRebalance()
	for {
		for c.queued.Load() >= maxQueuedBytes {
			select {
			case <-c.drained:
			case <-ctx.Done():
				return
			}
		}
		fetches := cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			if fatal(err) {
				c.fail(fmt.Errorf("franz: consume %s partition %d: %w", topic, part, err))
				return
			}
			c.log.Warn("fetch error; kgo retries", zap.String("topic", topic), zap.Int32("partition", part), zap.Error(err))
		})
		claims := c.stamp(fetches)
		cl.AllowRebalance()
		for _, cr := range claims {
			// Converted one run at a time as they are queued, so that the loop
			// starts on the first while the rest are converted: a poll can hold a
			// million records.
			for recs := range slices.Chunk(cr.recs, runLen) {
				b := c.convert(claimed{p: cr.p, epoch: cr.epoch, recs: recs})
				c.queued.Add(b.Bytes)
				select {
				case c.queue <- b:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// claimed is one partition's records of a poll with the claim they were read
// under.
type claimed struct {
	p     processor.Partition
	epoch uint64
	recs  []*kgo.Record
}

// convert turns cr's records, at most runLen, into a batch of messages, in a
// slice Poll gave back if there is one, and sizes it against maxQueuedBytes.
func (c *Consumer) convert(cr claimed) batch {
	var msgs []message
	select {
	case msgs = <-c.free:
	default:
		msgs = make([]message, 0, runLen)
	}
	var size int64
	for _, r := range cr.recs {
		size += recordOverhead + int64(len(r.Key)+len(r.Value))
		for _, h := range r.Headers {
			size += int64(len(h.Key) + len(h.Value))
		}
		msgs = append(msgs, toMessage(cr.p, r))
	}
	return batch{P: cr.p, Epoch: cr.epoch, Recs: msgs, Bytes: size}
}

// recycle takes back a used-up batch's slice, cleared by the poller, on the loop.
func (c *Consumer) recycle(msgs []message) {
	select {
	case c.free <- msgs:
	default:
	}
}

// fatal reports errors that rejoining or retrying cannot cure.
func fatal(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.InconsistentGroupProtocol) ||
		errors.Is(err, kerr.FencedInstanceID) ||
		errors.Is(err, kerr.InvalidTopicException) ||
		errors.Is(err, kerr.SaslAuthenticationFailed)
}

// stamp groups the polled records by partition and marks each group with the
// partition's current claim; records of partitions not owned are dropped.
func (c *Consumer) stamp(fetches kgo.Fetches) []claimed {
	var out []claimed
	c.mu.Lock()
	defer c.mu.Unlock()
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		p := processor.Partition{Topic: ftp.Topic, Index: ftp.Partition}
		if ftp.Err == nil {
			// Partitions without records carry their high watermark too.
			c.marks.Observe(p, ftp.HighWatermark)
		}
		if len(ftp.Records) == 0 {
			return
		}
		epoch, ok := c.owned[p]
		if !ok {
			return
		}
		out = append(out, claimed{p: p, epoch: epoch, recs: ftp.Records})
	})
	return out
}

func (c *Consumer) fail(err error) { c.ev.Fail(err) }

// done gives a batch's bytes back once Poll has used it up or dropped it; it runs
// on the loop.
func (c *Consumer) done(bytes int64) {
	c.queued.Add(-bytes)
	select {
	case c.drained <- struct{}{}:
	default:
	}
}

// onAssigned is kgo's OnPartitionsAssigned; it runs on kgo's group goroutine and
// queues an assignment event.
func (c *Consumer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	added := make(map[processor.Partition]uint64)
	for topic, idx := range assigned {
		for _, i := range idx {
			p := processor.Partition{Topic: topic, Index: i}
			if _, ok := c.owned[p]; ok {
				continue
			}
			c.nextEpoch++
			c.owned[p] = c.nextEpoch
			added[p] = c.nextEpoch
			// kgo fetches the group's committed offsets after this callback;
			// the refresher reads them from kgo.
			c.marks.Claim(p, c.nextEpoch, -1, nil)
		}
	}
	c.ev.Assign(added)
	c.mu.Unlock()
}

// onRevoked is kgo's OnPartitionsRevoked. It runs on kgo's group goroutine, and
// kgo releases the partitions when it returns, so it waits until the loop has run
// OnRevoke for them.
func (c *Consumer) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.release(revoked, false)
}

// onLost is kgo's OnPartitionsLost: the session ended, so the partitions are gone
// already and nothing can be committed for them. The loop is told as for a
// revocation, without waiting.
func (c *Consumer) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.release(lost, true)
}

func (c *Consumer) release(parts map[string][]int32, lost bool) {
	select {
	case <-c.closing:
		// Close leaves the group; the processor has joined its strategy already.
		return
	default:
	}
	c.mu.Lock()
	var moving []processor.Partition
	for topic, idx := range parts {
		for _, i := range idx {
			p := processor.Partition{Topic: topic, Index: i}
			if epoch, ok := c.owned[p]; ok {
				moving = append(moving, p)
				if lost {
					c.marks.Release(p, epoch)
					delete(c.owned, p)
				}
			}
		}
	}
	if len(moving) == 0 {
		c.mu.Unlock()
		return
	}
	rv := c.ev.Revoke(moving, lost)
	c.mu.Unlock()
	if lost {
		// The loop logs it as it runs OnLost.
		return
	}
	t := time.NewTimer(c.cfg.RevokeTimeout)
	defer t.Stop()
	select {
	case <-rv.Done():
	case <-c.closing:
	case <-t.C:
		c.log.Warn("revoked partitions released before the processor handled the revocation; their uncommitted messages will be read again by the next owner",
			zap.Stringers("partitions", moving), zap.Duration("revoke_timeout", c.cfg.RevokeTimeout))
	}
	c.mu.Lock()
	for _, p := range moving {
		c.marks.Release(p, c.owned[p])
		delete(c.owned, p)
	}
	c.mu.Unlock()
}
