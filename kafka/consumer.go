package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

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
// Subscribe, Poll, Buffered, Pause, Resume, Paused, Assignment, Commit, Fetch and
// Close belong to one goroutine, the processor's loop; Commit and Fetch may also
// be called from others.
type Consumer struct {
	cfg    ConsumerConfig
	log    *zap.Logger
	client sarama.Client
	group  sarama.ConsumerGroup
	// commits is a client of its own for Commit: a broker answers the requests of
	// one connection in order, so on the readers' connection a commit waits behind
	// a fetch that is waiting for data (up to Consumer.MaxWaitTime, 500 ms), as the
	// final commit of every shutdown did.
	commits     sarama.Client
	cooperative bool

	// queue carries batches from the partition readers to Poll; free returns their
	// slices for reuse. batchSize bounds a batch.
	queue     chan batch
	free      chan []*sarama.ConsumerMessage
	batchSize int
	// eventsPending is set while pending or failure has something for the loop, so
	// that a Poll answered from the current batch takes the lock only then.
	eventsPending atomic.Bool
	// wake tells Poll that events are pending; it holds at most one signal.
	wake chan struct{}
	// closing is closed by Close so that readers stop waiting for Poll.
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	// mu guards the state shared by sarama's goroutines and the loop.
	mu        sync.Mutex
	session   sarama.ConsumerGroupSession
	announced map[processor.Partition]uint64      // told (or about to be told) to the loop, with epoch
	revoking  map[processor.Partition]*revocation // revocations the loop has not handled yet
	pending   []event
	nextEpoch uint64
	failure   error // a fatal error from the group, returned by Poll
	closed    bool  // set by Close before it waits for calls

	// The loop's own state, touched only by the goroutine calling Poll.
	cb         processor.RebalanceCallbacks
	subscribed bool
	active     map[processor.Partition]uint64 // the assignment as the loop knows it
	paused     map[processor.Partition]bool
	held       map[processor.Partition][]batch // read while paused, delivered on Resume
	ready      []batch                         // resumed batches, delivered before the queue
	cur        batch                           // the batch Poll is handing out

	stop       context.CancelFunc // ends the Consume loop
	consumeEnd chan struct{}      // closed when the Consume loop has returned
	errorsEnd  chan struct{}      // closed when the group's error channel is drained

	// calls counts Commit and Fetch requests still talking to a broker, so that
	// Close can wait for them before it closes the client.
	calls   sync.WaitGroup
	fetchMu sync.Mutex // serialises Fetch: sarama allows one reader per partition
	fetcher sarama.Consumer
}

// batch is a run of messages a partition reader took from its claim at once, all
// of partition p. epoch identifies the claim they were read under, so that messages
// of an earlier claim of the same partition are recognised after a revocation.
// Poll hands them out from next on.
type batch struct {
	p     processor.Partition
	epoch uint64
	msgs  []*sarama.ConsumerMessage
	next  int
}

func (b *batch) remaining() int { return len(b.msgs) - b.next }

// maxBatch bounds a batch: large enough that the queue's cost per message is
// small, small enough that a batch is a fraction of the default queue bound.
const maxBatch = 256

// event is an assignment change waiting for Poll: exactly one field is set.
type event struct {
	assign map[processor.Partition]uint64
	revoke *revocation
}

// revocation is a set of partitions that leave the assignment together. done is
// closed once the loop has run OnRevoke for them.
type revocation struct {
	partitions []processor.Partition
	done       chan struct{}
}

var (
	_ processor.Consumer[processor.KafkaPayload] = (*Consumer)(nil)
	_ processor.Fetcher[processor.KafkaPayload]  = (*Consumer)(nil)
)

// NewConsumer validates cfg and connects to the cluster. It joins the group only
// on Subscribe.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
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
	return &Consumer{
		cfg:         cfg,
		log:         cfg.Logger.With(zap.String("group", cfg.GroupID)),
		client:      client,
		commits:     commits,
		group:       group,
		cooperative: cfg.Assignor == AssignorCooperativeSticky,
		queue:       make(chan batch, queued),
		free:        make(chan []*sarama.ConsumerMessage, queued+1),
		batchSize:   batchSize,
		wake:        make(chan struct{}, 1),
		closing:     make(chan struct{}),
		announced:   make(map[processor.Partition]uint64),
		revoking:    make(map[processor.Partition]*revocation),
		active:      make(map[processor.Partition]uint64),
		paused:      make(map[processor.Partition]bool),
		held:        make(map[processor.Partition][]batch),
	}, nil
}

// Subscribe joins the group for topics. It may be called once.
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
	c.subscribed = true
	c.cb = cb
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.consumeEnd = make(chan struct{})
	c.errorsEnd = make(chan struct{})
	topics = slices.Clone(topics)
	go c.consume(ctx, topics)
	go c.drainErrors()
	return nil
}

// consume keeps the member in the group: sarama's Consume returns at every eager
// rebalance and on errors, and is called again until the consumer closes.
func (c *Consumer) consume(ctx context.Context, topics []string) {
	defer close(c.consumeEnd)
	const backoff = time.Second
	h := handler{c}
	for {
		err := c.group.Consume(ctx, topics, h)
		if ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if err == nil {
			continue
		}
		if fatal(err) {
			c.fail(fmt.Errorf("kafka: consume %v: %w", topics, err))
			return
		}
		c.log.Warn("consumer group session failed; rejoining", zap.Strings("topics", topics), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fatal reports errors that rejoining cannot cure.
func fatal(err error) bool {
	return errors.Is(err, sarama.ErrTopicAuthorizationFailed) ||
		errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		errors.Is(err, sarama.ErrInconsistentGroupProtocol) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

func (c *Consumer) fail(err error) {
	c.mu.Lock()
	if c.failure == nil {
		c.failure = err
	}
	c.eventsPending.Store(true)
	c.mu.Unlock()
	c.signal()
}

// drainErrors logs what the group reports in the background; sarama drops errors
// nobody reads, so they would otherwise vanish.
func (c *Consumer) drainErrors() {
	defer close(c.errorsEnd)
	for err := range c.group.Errors() {
		c.log.Warn("consumer group error", zap.Error(err))
	}
}

func (c *Consumer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Poll returns the next message, waiting at most timeout. Rebalance callbacks run
// inside it. ok is false when no message came in time.
func (c *Consumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	var none processor.Message[processor.KafkaPayload]
	if !c.subscribed {
		return none, false, ErrNotSubscribed
	}
	if c.eventsPending.Load() {
		if err := c.runEvents(); err != nil {
			return none, false, err
		}
	}
	if m, ok := c.next(); ok {
		return toMessage(c.cur.p, m), true, nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := c.runEvents(); err != nil {
			return none, false, err
		}
		if m, ok := c.next(); ok {
			return toMessage(c.cur.p, m), true, nil
		}
		select {
		case b := <-c.queue:
			c.take(b)
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		select {
		case b := <-c.queue:
			c.take(b)
		case <-c.wake:
		case <-timer.C:
			return none, false, c.runEvents()
		case <-ctx.Done():
			return none, false, ctx.Err()
		case <-c.closing:
			return none, false, ErrClosed
		}
	}
}

// Buffered returns how many messages Poll can hand out without waiting, unless a
// rebalance intervenes. The processor skips timing such polls.
func (c *Consumer) Buffered() int { return c.cur.remaining() }

// next returns the next message held locally, from the current batch, then from
// batches resumed after a pause, without touching a channel.
func (c *Consumer) next() (*sarama.ConsumerMessage, bool) {
	for {
		if c.cur.next < len(c.cur.msgs) {
			m := c.cur.msgs[c.cur.next]
			c.cur.msgs[c.cur.next] = nil
			c.cur.next++
			return m, true
		}
		c.dropCur()
		if len(c.ready) == 0 {
			return nil, false
		}
		b := c.ready[0]
		c.ready[0] = batch{}
		c.ready = c.ready[1:]
		c.take(b)
	}
}

// take makes b the current batch, which must be used up, if its partition may be
// delivered now. Batches of partitions the loop no longer owns are dropped; those
// of paused partitions are held until Resume.
func (c *Consumer) take(b batch) {
	if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
		// A reader announces its partition before it sends anything, so the
		// announcement may still be pending; a revocation can be pending too. An
		// error stays pending and Poll returns it.
		_ = c.runEvents()
		if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
			c.recycle(b.msgs)
			return
		}
	}
	if c.paused[b.p] {
		c.held[b.p] = append(c.held[b.p], b)
		return
	}
	c.cur = b
}

// dropCur gives up what is left of the current batch and reuses its slice.
func (c *Consumer) dropCur() {
	if c.cur.msgs != nil {
		c.recycle(c.cur.msgs)
	}
	c.cur = batch{}
}

// recycle hands a batch's slice back to the readers once nothing refers to it.
func (c *Consumer) recycle(msgs []*sarama.ConsumerMessage) {
	clear(msgs)
	select {
	case c.free <- msgs[:0]:
	default:
	}
}

func toMessage(p processor.Partition, m *sarama.ConsumerMessage) processor.Message[processor.KafkaPayload] {
	payload := processor.KafkaPayload{Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 {
		payload.Headers = make([]processor.Header, len(m.Headers))
		for i, h := range m.Headers {
			payload.Headers[i] = processor.Header{Key: string(h.Key), Value: h.Value}
		}
	}
	return processor.NewBrokerMessage(payload, p, m.Offset, m.Timestamp)
}

// runEvents applies pending assignment changes in the order they happened and
// runs the callbacks for them. It returns the group's fatal error, if any.
func (c *Consumer) runEvents() error {
	c.mu.Lock()
	events := c.pending
	c.pending = nil
	failure := c.failure
	c.eventsPending.Store(failure != nil)
	c.mu.Unlock()
	for _, ev := range events {
		if ev.assign != nil {
			maps.Copy(c.active, ev.assign)
			added := sortedPartitions(maps.Keys(ev.assign))
			c.log.Info("partitions assigned", zap.Stringers("partitions", added))
			if c.cb.OnAssign != nil {
				c.cb.OnAssign(added)
			}
			continue
		}
		rv := ev.revoke
		processor.SortPartitions(rv.partitions)
		c.log.Info("partitions revoked", zap.Stringers("partitions", rv.partitions))
		if c.cb.OnRevoke != nil {
			c.cb.OnRevoke(rv.partitions)
		}
		c.mu.Lock()
		for _, p := range rv.partitions {
			if c.cur.p == p {
				c.dropCur()
			}
			delete(c.active, p)
			delete(c.paused, p)
			delete(c.held, p)
			if c.revoking[p] == rv {
				delete(c.revoking, p)
			}
		}
		c.mu.Unlock()
		close(rv.done)
	}
	return failure
}

// Pause stops delivery and fetching of partitions of the current assignment
// without leaving the group.
func (c *Consumer) Pause(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, p := range partitions {
		if _, ok := c.active[p]; ok && !c.paused[p] {
			if c.cur.p == p && c.cur.remaining() > 0 {
				c.held[p] = append(c.held[p], c.cur)
				c.cur = batch{}
			}
			c.paused[p] = true
			byTopic[p.Topic] = append(byTopic[p.Topic], p.Index)
		}
	}
	if len(byTopic) > 0 {
		c.group.Pause(byTopic)
	}
}

// Resume undoes Pause. Messages read before the pause took effect are delivered
// first.
func (c *Consumer) Resume(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, p := range partitions {
		if !c.paused[p] {
			continue
		}
		delete(c.paused, p)
		byTopic[p.Topic] = append(byTopic[p.Topic], p.Index)
		c.ready = append(c.ready, c.held[p]...)
		delete(c.held, p)
	}
	if len(byTopic) > 0 {
		c.group.Resume(byTopic)
	}
}

// Paused returns the paused partitions, sorted.
func (c *Consumer) Paused() []processor.Partition { return sortedPartitions(maps.Keys(c.paused)) }

// Assignment returns the partitions assigned as of the last callback, sorted.
func (c *Consumer) Assignment() []processor.Partition { return sortedPartitions(maps.Keys(c.active)) }

func sortedPartitions(seq func(func(processor.Partition) bool)) []processor.Partition {
	ps := slices.Collect(seq)
	processor.SortPartitions(ps)
	return ps
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

// handler is the sarama.ConsumerGroupHandler of a Consumer.
type handler struct{ c *Consumer }

func (h handler) Setup(sess sarama.ConsumerGroupSession) error {
	h.c.mu.Lock()
	h.c.session = sess
	h.c.mu.Unlock()
	return nil
}

// Cleanup revokes what the session's readers did not, such as partitions whose
// reader never started, before the session's partitions go.
func (h handler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.c.release(processor.Partition{}, true)
	h.c.mu.Lock()
	if h.c.session == sess {
		h.c.session = nil
	}
	h.c.mu.Unlock()
	return nil
}

func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.c
	p := processor.Partition{Topic: claim.Topic(), Index: claim.Partition()}
	epoch := c.announce(sess, p)
	msgs := claim.Messages()
	done := sess.Context().Done()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				// The claim was revoked: only this partition moves under the
				// cooperative protocol, the whole assignment under an eager one.
				c.release(p, !c.cooperative)
				return nil
			}
			b, open := c.fill(m, msgs)
			select {
			case c.queue <- batch{p: p, epoch: epoch, msgs: b}:
			case <-done:
				c.release(p, true)
				return nil
			case <-c.closing:
				return nil
			}
			if !open {
				c.release(p, !c.cooperative)
				return nil
			}
		case <-done:
			c.release(p, true)
			return nil
		case <-c.closing:
			return nil
		}
	}
}

// fill returns first and whatever else msgs has ready, up to batchSize messages,
// without waiting. open is false if msgs was found closed.
func (c *Consumer) fill(first *sarama.ConsumerMessage, msgs <-chan *sarama.ConsumerMessage) (b []*sarama.ConsumerMessage, open bool) {
	select {
	case b = <-c.free:
	default:
		b = make([]*sarama.ConsumerMessage, 0, c.batchSize)
	}
	b = append(b, first)
	for len(b) < c.batchSize {
		select {
		case m, ok := <-msgs:
			if !ok {
				return b, false
			}
			b = append(b, m)
		default:
			return b, true
		}
	}
	return b, true
}

// announce queues an assignment event for every partition of the session not yet
// announced and returns p's epoch. The first reader of a generation announces the
// whole generation, so the loop sees one OnAssign per rebalance.
func (c *Consumer) announce(sess sarama.ConsumerGroupSession, p processor.Partition) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch, ok := c.announced[p]; ok {
		return epoch
	}
	added := make(map[processor.Partition]uint64)
	add := func(q processor.Partition) {
		if _, ok := c.announced[q]; ok {
			return
		}
		c.nextEpoch++
		added[q] = c.nextEpoch
		c.announced[q] = c.nextEpoch
		// A revocation of an earlier claim that timed out waiting is over.
		delete(c.revoking, q)
	}
	add(p)
	// sarama shares the claims map with its own goroutines: read it only.
	for topic, indexes := range sess.Claims() {
		for _, i := range indexes {
			add(processor.Partition{Topic: topic, Index: i})
		}
	}
	c.pending = append(c.pending, event{assign: added})
	c.eventsPending.Store(true)
	c.signal()
	return c.announced[p]
}

// release revokes p (or, with all, every announced partition) and waits, at most
// RevokeTimeout, until the loop has run OnRevoke for it.
func (c *Consumer) release(p processor.Partition, all bool) {
	c.mu.Lock()
	rv := c.revoking[p]
	if rv == nil {
		var moving []processor.Partition
		if all {
			moving = slices.Collect(maps.Keys(c.announced))
		} else if _, ok := c.announced[p]; ok {
			moving = []processor.Partition{p}
		}
		if len(moving) > 0 {
			// Revocations the loop has not picked up yet are merged, so that
			// partitions leaving together reach OnRevoke together.
			if n := len(c.pending); n > 0 && c.pending[n-1].revoke != nil {
				rv = c.pending[n-1].revoke
				rv.partitions = append(rv.partitions, moving...)
			} else {
				rv = &revocation{partitions: moving, done: make(chan struct{})}
				c.pending = append(c.pending, event{revoke: rv})
			}
			for _, q := range moving {
				delete(c.announced, q)
				c.revoking[q] = rv
			}
			c.eventsPending.Store(true)
			c.signal()
		}
	}
	c.mu.Unlock()
	if rv == nil {
		return
	}
	t := time.NewTimer(c.cfg.RevokeTimeout)
	defer t.Stop()
	select {
	case <-rv.done:
	case <-c.closing:
	case <-t.C:
		c.log.Warn("revoked partitions released before the processor handled the revocation; their uncommitted messages will be read again by the next owner",
			zap.Stringers("partitions", rv.partitions), zap.Duration("revoke_timeout", c.cfg.RevokeTimeout))
	}
}
