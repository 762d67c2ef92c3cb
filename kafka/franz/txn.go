package franz

// TxnConsumer is a Consumer whose kgo client is also a transactional producer.
// Produce (the pipeline's transactional sink) and Commit run on the processor's
// loop, and so do the wrapped rebalance callbacks, which run inside Poll; Close
// belongs to the loop too. tmu guards the open transaction's state (ahead,
// failed, broken, topicIDs, and changes of open), because kgo's promises, on
// kgo's goroutine, record a failed write in it; Poll reads open, an atomic,
// without it. The client, ownership and the event mailbox are the Consumer's
// (consumer.go), reached under its own mu.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
)

// ErrTxnAborted is wrapped by the errors of a TxnConsumer whose transaction was
// aborted: Commit, Produce and Poll return it from then on, and the processor
// stops. Nothing of the aborted transaction is visible to read_committed readers
// and none of its offsets are committed; a new consumer and processor resume from
// the last committed transaction.
var ErrTxnAborted = errors.New("franz: transaction aborted")

// ErrTxnAhead is wrapped by Commit's error when the open transaction holds outputs
// of input offsets past the ones it was asked to commit (the dead-letter queue
// holds a commit back until its deliveries are confirmed, say). The transaction
// stays open and the processor commits it again later, with offsets that cover it.
var ErrTxnAhead = errors.New("franz: the transaction holds outputs past the offsets to commit")

// Defaults of TxnConfig.
const (
	DefaultTransactionTimeout = 30 * time.Second
	// DefaultTxnEndTimeout bounds the flush, the offset commit and the end of one
	// transaction.
	DefaultTxnEndTimeout = 30 * time.Second
)

// concurrentTxnBackoff spaces the retries of a transactional request the
// coordinator refuses with CONCURRENT_TRANSACTIONS, which it does while it writes
// the markers of the previous transaction.
const concurrentTxnBackoff = 20 * time.Millisecond

// generationPoll is how often a commit refused for a stale generation looks for
// the member's next one; kgo learns it from the JoinGroup response.
const generationPoll = 10 * time.Millisecond

// openTxnPollTimeout bounds Poll's wait while a transaction is open. With no
// traffic the processor comes round to its commit policy only once per poll
// wait (processor.Config.PollTimeout, 1 s by default), and the outputs of the
// open transaction stay invisible until it commits.
const openTxnPollTimeout = 50 * time.Millisecond

// TxnConfig configures the transactions of NewTxnConsumer.
type TxnConfig struct {
	// TransactionalID names the member's transactional producer. Required. Two
	// running members must not share one (the second fences the first); a member
	// restarted with its predecessor's id fences the transaction the predecessor
	// left open at once, instead of after TransactionTimeout.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay open
	// before it aborts it, which is how a member that died mid-transaction stops
	// holding back read_committed readers and the group's offsets. It must exceed
	// the commit interval. Default 30 s.
	TransactionTimeout time.Duration
	// EndTimeout bounds the flush, offset commit and end of one transaction on
	// top of the context Commit is given. Default 30 s.
	EndTimeout time.Duration
}

func (cfg TxnConfig) build() (TxnConfig, error) {
	if cfg.TransactionalID == "" {
		return cfg, errors.New("franz: TxnConfig.TransactionalID is empty; give each member a stable id of its own")
	}
	var err error
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"TransactionTimeout", &cfg.TransactionTimeout, DefaultTransactionTimeout},
		{"EndTimeout", &cfg.EndTimeout, DefaultTxnEndTimeout},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			err = errors.Join(err, fmt.Errorf("franz: TxnConfig.%s is %s; it must be positive (0 = %s)", d.name, *d.v, d.def))
		}
	}
	return cfg, err
}

// TxnConsumer is a Consumer that commits in Kafka transactions (KIP-98, with the
// group metadata of KIP-447): the records given to Produce and the offsets given
// to Commit are committed together when Commit ends the transaction, or neither
// is. It reads with read_committed isolation, and kgo fetches only stable
// committed offsets.
//
// A transaction begins with the first Produce after a commit. Commit flushes the
// records, commits the offsets in the transaction with the group's member id and
// generation (a member the group has moved on from is fenced, and its
// transaction aborts), and ends it. Under cooperative-sticky, a commit refused
// because the group was moving to a new generation is sent again in the member's
// new one, if it still owns every partition committed. When nothing was produced
// since the last commit, Commit commits the offsets as Consumer does.
//
// Any failure to commit a transaction that holds records (a record refused, the
// member fenced, a broker that does not answer) aborts it, and so does a
// rebalance that takes partitions whose outputs the open transaction holds
// uncommitted. The consumer then reports every partition lost, which makes the
// processor drop its work uncommitted, and fails with ErrTxnAborted. A new
// consumer and processor resume from the last committed transaction.
//
// pipeline.Transact is the sink that writes into the transaction.
type TxnConsumer struct {
	*Consumer
	txn TxnConfig

	tmu sync.Mutex
	// open is set while a transaction is begun and not yet ended; it is changed
	// under tmu and read without it by Poll, once per message.
	open atomic.Bool
	// ahead is, per input partition, the offset after the last input whose
	// outputs the open transaction holds.
	ahead map[processor.Partition]int64
	// failed is the first write the open transaction lost.
	failed error
	// broken is set once a transaction was aborted: the consumer is done.
	broken error
	// topicIDs caches the ids of the input topics for TxnOffsetCommit v6.
	topicIDs map[string][16]byte
}

var _ processor.Consumer[processor.KafkaPayload] = (*TxnConsumer)(nil)

// NewTxnConsumer validates both configurations. It connects and joins the group
// only on Subscribe. kgo's TransactionalID, TransactionTimeout and isolation
// level in cfg.ClientOptions are overridden: txn and the consumer set them.
func NewTxnConsumer(cfg ConsumerConfig, txn TxnConfig) (*TxnConsumer, error) {
	txn, err := txn.build()
	if err != nil {
		return nil, err
	}
	cfg.ClientOptions = append(slices.Clip(cfg.ClientOptions),
		kgo.TransactionalID(txn.TransactionalID),
		kgo.TransactionTimeout(txn.TransactionTimeout),
		// kgo always asks for stable offsets (KIP-447's RequireStable), so a
		// member never starts from offsets of a transaction still open.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	c, err := NewConsumer(cfg)
	if err != nil {
		return nil, err
	}
	return &TxnConsumer{
		Consumer: c,
		txn:      txn,
		ahead:    make(map[processor.Partition]int64),
		topicIDs: make(map[string][16]byte),
	}, nil
}

// Subscribe joins the group for topics, as Consumer.Subscribe does. After cb's
// OnRevoke or OnLost has run for partitions whose outputs the open transaction
// still holds past their committed offsets, the transaction is aborted: their
// next owner reads those inputs again.
func (t *TxnConsumer) Subscribe(topics []string, cb processor.RebalanceCallbacks) error {
	revoke, lose := cb.OnRevoke, cb.OnLost
	if lose == nil {
		lose = revoke
	}
	wrapped := processor.RebalanceCallbacks{
		OnAssign: cb.OnAssign,
		OnRevoke: func(revoked []processor.Partition) {
			if revoke != nil {
				revoke(revoked)
			}
			t.released(revoked)
		},
		OnLost: func(lost []processor.Partition) {
			if lose != nil {
				lose(lost)
			}
			t.released(lost)
		},
	}
	return t.Consumer.Subscribe(topics, wrapped)
}

// Poll is Consumer.Poll, waiting at most openTxnPollTimeout while a transaction
// is open, so that an idle stream's last transaction is committed when the
// commit policy says rather than up to a PollTimeout later.
func (t *TxnConsumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	if t.open.Load() {
		timeout = min(timeout, openTxnPollTimeout)
	}
	return t.Consumer.Poll(ctx, timeout)
}

// PollRun is Consumer.PollRun with Poll's bound on the wait: the loop polls
// through it when the consumer has it, so the bound must hold here too.
func (t *TxnConsumer) PollRun(ctx context.Context, timeout time.Duration, into []processor.Message[processor.KafkaPayload]) ([]processor.Message[processor.KafkaPayload], error) {
	if t.open.Load() {
		timeout = min(timeout, openTxnPollTimeout)
	}
	return t.Consumer.PollRun(ctx, timeout, into)
}

// released aborts the open transaction if it holds outputs of parts, which the
// member no longer owns.
func (t *TxnConsumer) released(parts []processor.Partition) {
	t.tmu.Lock()
	var held []processor.Partition
	for _, p := range parts {
		if _, ok := t.ahead[p]; ok {
			held = append(held, p)
		}
	}
	t.tmu.Unlock()
	if len(held) == 0 {
		return
	}
	processor.SortPartitions(held)
	t.abort(fmt.Errorf("partitions %v left the member with their outputs uncommitted in the open transaction", held))
}

// Produce writes payload to topic in the open transaction, beginning one if none
// is open, as the output of the inputs of from: the transaction may be committed
// only with offsets at or past from's. It returns before the write is
// acknowledged; a write that fails aborts the transaction at the next Commit. It
// blocks while kgo's buffer is full, at most until ctx is done. Call it on the
// processor's loop, as pipeline.Transact does: a write from another goroutine
// could land in a transaction that does not commit its input's offsets.
func (t *TxnConsumer) Produce(ctx context.Context, topic string, payload processor.KafkaPayload, from processor.Committable) error {
	cl := t.client()
	if cl == nil {
		return kafka.ErrNotSubscribed
	}
	t.tmu.Lock()
	if t.broken != nil {
		err := t.broken
		t.tmu.Unlock()
		return err
	}
	if !t.open.Load() {
		if err := cl.BeginTransaction(); err != nil {
			t.tmu.Unlock()
			return fmt.Errorf("franz: begin transaction: %w", err)
		}
		t.open.Store(true)
		t.failed = nil
	}
	if part, next, ok := from.Single(); ok {
		t.mark(part, next)
	} else {
		for part, next := range from.All() {
			t.mark(part, next)
		}
	}
	t.tmu.Unlock()

	rec := &kgo.Record{Topic: topic, Key: payload.Key, Value: payload.Value}
	if len(payload.Headers) > 0 {
		rec.Headers = make([]kgo.RecordHeader, len(payload.Headers))
		for i, h := range payload.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	// kgo fails a buffered record whose context ends; ctx must bound only the
	// wait for room, so the record's own context is cancelled only if ctx ends
	// before Produce returns.
	rctx, stop := context.WithCancel(context.Background())
	unhook := context.AfterFunc(ctx, stop)
	cl.Produce(rctx, rec, func(r *kgo.Record, err error) {
		stop()
		if err != nil {
			t.tmu.Lock()
			if t.failed == nil {
				t.failed = fmt.Errorf("franz: produce to %s: %w", r.Topic, err)
			}
			t.tmu.Unlock()
		}
	})
	unhook()
	return nil
}

func (t *TxnConsumer) mark(part processor.Partition, next int64) {
	if cur, ok := t.ahead[part]; !ok || next > cur {
		t.ahead[part] = next
	}
}

// Commit commits offsets, the next offset to consume per partition, in the open
// transaction and ends it, so that its records become visible together with the
// offsets. With no transaction open it commits them as Consumer.Commit does. It
// refuses offsets short of the transaction's outputs (ErrTxnAhead), leaving the
// transaction open; any other failure aborts the transaction (ErrTxnAborted).
func (t *TxnConsumer) Commit(ctx context.Context, offsets map[processor.Partition]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	t.tmu.Lock()
	broken, open := t.broken, t.open.Load()
	var short []processor.Partition
	for p, next := range t.ahead {
		if off, ok := offsets[p]; !ok || off < next {
			short = append(short, p)
		}
	}
	t.tmu.Unlock()
	if broken != nil {
		return broken
	}
	if !open {
		return t.Consumer.Commit(ctx, offsets)
	}
	if len(short) > 0 {
		processor.SortPartitions(short)
		return fmt.Errorf("franz: commit %v for group %s: %v: %w", offsets, t.cfg.GroupID, short, ErrTxnAhead)
	}
	if err := t.beginCall(); err != nil {
		return err
	}
	defer t.calls.Done()
	t.mu.Lock()
	cl := t.cl
	var notOwned []processor.Partition
	for p := range offsets {
		if _, ok := t.owned[p]; !ok {
			notOwned = append(notOwned, p)
		}
	}
	t.mu.Unlock()
	if len(notOwned) > 0 {
		processor.SortPartitions(notOwned)
		return t.abort(fmt.Errorf("commit %v: %v: %w", offsets, notOwned, ErrNotOwned))
	}
	ctx, cancel := context.WithTimeout(ctx, t.txn.EndTimeout)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return t.abort(fmt.Errorf("flush: %w", err))
	}
	t.tmu.Lock()
	failed := t.failed
	t.tmu.Unlock()
	if failed != nil {
		return t.abort(failed)
	}
	if err := t.commitOffsets(ctx, cl, offsets); err != nil {
		return t.abort(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return t.abort(fmt.Errorf("end transaction: %w", err))
	}
	t.tmu.Lock()
	t.open.Store(false)
	clear(t.ahead)
	t.tmu.Unlock()
	// kgo does not learn of offsets committed by raw requests; the lag figures
	// (lag.go) take them from here.
	for p, off := range offsets {
		t.marks.ObserveCommitted(p, off)
	}
	return nil
}

// commitOffsets adds the group to the transaction and commits offsets in it with
// the group's current member id and generation, the fence of KIP-447.
func (t *TxnConsumer) commitOffsets(ctx context.Context, cl *kgo.Client, offsets map[processor.Partition]int64) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = t.txn.TransactionalID
	add.ProducerID, add.ProducerEpoch = id, epoch
	add.Group = t.cfg.GroupID
	if err := retryConcurrent(ctx, func() error {
		resp, err := add.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	}); err != nil {
		return fmt.Errorf("add offsets to transaction: %w", err)
	}
	ids, err := t.ids(ctx, cl, offsets)
	if err != nil {
		return err
	}
	member, generation := cl.GroupMetadata()
	for {
		err := t.sendTxnOffsets(ctx, cl, id, epoch, member, generation, ids, offsets)
		if !t.cooperative || !(errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress)) {
			return err
		}
		// The group is moving on to a new generation. Under a cooperative protocol
		// a partition leaves a member only after the member has revoked it and
		// rejoined, so while this member still owns every partition committed,
		// the new generation may commit them; a member that lost any is fenced.
		if member, generation, err = t.nextGeneration(ctx, cl, member, generation, offsets, err); err != nil {
			return err
		}
	}
}

// nextGeneration waits, until ctx is done, for the member and generation to send
// a refused commit with again: after ILLEGAL_GENERATION a generation after
// generation, after REBALANCE_IN_PROGRESS (the group has not completed its
// rebalance yet) whichever the member has a moment later. It returns them if the
// member kept its id and still owns every partition of offsets; otherwise it
// returns cause.
func (t *TxnConsumer) nextGeneration(ctx context.Context, cl *kgo.Client, member string, generation int32, offsets map[processor.Partition]int64, cause error) (string, int32, error) {
	for {
		select {
		case <-time.After(generationPoll):
		case <-ctx.Done():
			return "", 0, cause
		}
		m, g := cl.GroupMetadata()
		if g == generation && errors.Is(cause, kerr.IllegalGeneration) {
			continue
		}
		if m != member || g < 0 {
			return "", 0, cause
		}
		t.mu.Lock()
		for p := range offsets {
			if _, ok := t.owned[p]; !ok {
				t.mu.Unlock()
				return "", 0, cause
			}
		}
		t.mu.Unlock()
		t.log.Debug("transactional offset commit sent again after the group's rebalance",
			zap.Int32("generation", g), zap.Error(cause))
		return m, g, nil
	}
}

// sendTxnOffsets sends one TxnOffsetCommit of offsets as member of generation.
func (t *TxnConsumer) sendTxnOffsets(ctx context.Context, cl *kgo.Client, id int64, epoch int16, member string, generation int32, ids map[string][16]byte, offsets map[processor.Partition]int64) error {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID = t.txn.TransactionalID
	req.Group = t.cfg.GroupID
	req.ProducerID, req.ProducerEpoch = id, epoch
	req.MemberID, req.Generation = member, generation
	if t.cfg.InstanceID != "" {
		req.InstanceID = &t.cfg.InstanceID
	}
	byTopic := make(map[string][]processor.Partition)
	for p := range offsets {
		byTopic[p.Topic] = append(byTopic[p.Topic], p)
	}
	for _, topic := range slices.Sorted(maps.Keys(byTopic)) {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, ids[topic]
		for _, p := range byTopic[topic] {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p.Index, offsets[p], -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	return retryConcurrent(ctx, func() error {
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("transactional offset commit: %w", err)
		}
		var errs []error
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("transactional offset commit of %s: %w", processor.Partition{Topic: rt.Topic, Index: rp.Partition}, err))
				}
			}
		}
		return errors.Join(errs...)
	})
}

// ids returns the topic ids of offsets' topics, which TxnOffsetCommit v6 names
// topics by, asking the broker for those not known yet.
func (t *TxnConsumer) ids(ctx context.Context, cl *kgo.Client, offsets map[processor.Partition]int64) (map[string][16]byte, error) {
	t.tmu.Lock()
	defer t.tmu.Unlock()
	var missing []string
	for p := range offsets {
		if _, ok := t.topicIDs[p.Topic]; !ok && !slices.Contains(missing, p.Topic) {
			missing = append(missing, p.Topic)
		}
	}
	if len(missing) > 0 {
		req := kmsg.NewPtrMetadataRequest()
		for _, topic := range missing {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("topic ids of %v: %w", missing, err)
		}
		for _, rt := range resp.Topics {
			if rt.Topic != nil && kerr.ErrorForCode(rt.ErrorCode) == nil {
				t.topicIDs[*rt.Topic] = rt.TopicID
			}
		}
	}
	return maps.Clone(t.topicIDs), nil
}

// retryConcurrent runs fn again while the coordinator answers
// CONCURRENT_TRANSACTIONS, until ctx is done.
func retryConcurrent(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, kerr.ConcurrentTransactions) {
			return err
		}
		select {
		case <-time.After(concurrentTxnBackoff):
		case <-ctx.Done():
			return err
		}
	}
}

// abort aborts the open transaction, reports every owned partition lost so that
// the processor drops its work uncommitted, and makes the consumer fail with
// ErrTxnAborted. It returns that error.
func (t *TxnConsumer) abort(cause error) error {
	err := fmt.Errorf("%w: %w", ErrTxnAborted, cause)
	t.tmu.Lock()
	if t.broken != nil {
		t.tmu.Unlock()
		return t.broken
	}
	t.broken = err
	t.open.Store(false)
	clear(t.ahead)
	t.tmu.Unlock()
	t.log.Error("transaction aborted; every partition is dropped uncommitted, to be read again from the last committed transaction",
		zap.String("transactional_id", t.txn.TransactionalID), zap.Error(cause))
	if cl := t.client(); cl != nil {
		t.endAborted(cl)
		t.mu.Lock()
		owned := make(map[string][]int32)
		for p := range t.owned {
			owned[p.Topic] = append(owned[p.Topic], p.Index)
		}
		t.mu.Unlock()
		t.onLost(context.Background(), cl, owned)
	}
	t.fail(err)
	return err
}

// endAborted drops the buffered records and ends the transaction with an abort.
// If the broker cannot be told, it aborts the transaction itself after
// TransactionTimeout, or when a member with the same TransactionalID starts.
func (t *TxnConsumer) endAborted(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), t.txn.EndTimeout)
	defer cancel()
	if err := cl.AbortBufferedRecords(ctx); err != nil {
		t.log.Warn("buffered records of the aborted transaction not dropped in time", zap.Error(err))
	}
	err := cl.EndTransaction(ctx, kgo.TryAbort)
	if err != nil {
		// kgo asks for one retry with TryAbort after an unconfirmed end.
		err = cl.EndTransaction(ctx, kgo.TryAbort)
	}
	if err != nil {
		t.log.Warn("the broker was not told of the abort; it aborts the transaction after the transaction timeout",
			zap.Duration("transaction_timeout", t.txn.TransactionTimeout), zap.Error(err))
	}
}

// Close aborts a transaction still open (the processor commits before it closes
// the consumer, so there is one only after a failure), then closes the consumer.
func (t *TxnConsumer) Close() error {
	t.tmu.Lock()
	open := t.open.Swap(false)
	t.tmu.Unlock()
	if cl := t.client(); open && cl != nil {
		t.endAborted(cl)
	}
	return t.Consumer.Close()
}
