package segments

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// ingestRetryInterval is how long a batch whose write to Redis failed waits before
// it is written again, so that a Redis that is down is not hammered.
const ingestRetryInterval = 100 * time.Millisecond

// ingester is the step that writes batches of spans to Redis, up to max batches at a
// time, so that the loop decodes and batches the next spans (and Redis works on the
// next batch) while a batch's round trip is under way. Finished batches are
// forwarded in the order they were submitted, and only then do their partitions'
// clocks move: a batch done early must not let a clock pass the spans of an earlier
// batch that is not in Redis yet, and offsets are committed in order.
//
// strategies.RunTaskConcurrently would forward in order too, but a batch whose write
// failed would surface as an error in its place and be skipped; here the batch is
// written again until it succeeds or the step stops.
//
// Ownership: the loop goroutine (the caller of Submit, Poll, Join and Terminate)
// owns the queue; the goroutine writing a batch owns its err until it closes done.
type ingester struct {
	buf          *store.Buffer
	clock        *kafkaClock
	next         processor.Strategy[int]
	max          int
	redisTimeout time.Duration
	log          *zap.Logger
	m            safeMetrics

	// tracker, when offsets are committed behind the flush, records each batch's
	// offsets at Submit and its payload sets before its first write.
	tracker *commitTracker

	pending inflight.Queue[*ingestBatch]

	// stop cancels every write in flight when the step is joined or terminated.
	stopCtx context.Context
	stop    context.CancelFunc
	writers sync.WaitGroup
}

// ingestBatch is one batch on its way to Redis.
type ingestBatch struct {
	msg   processor.Message[[]processor.Message[store.Span]]
	parts batchTimes
	spans int
	// err is set when the step stopped before the batch was in Redis.
	err error
	// clocked says the partitions' clocks have moved past the batch already, so a
	// batch the next step rejected does not move them twice.
	clocked bool
	// tracked is the batch's entry in the commit tracker; nil without one.
	tracked *trackedBatch
}

// batchTimes is what one batch holds of each partition. As a store.Clock it gives
// each shard the batch's Kafka time there.
type batchTimes map[int32]partitionTime

// partitionTime is what one batch holds of one partition.
type partitionTime struct {
	spans int
	// oldest is the smallest Kafka timestamp among them: the partition's time.
	oldest time.Time
}

func (b batchTimes) Now(shard int32) time.Time { return b[shard].oldest }

// newIngester returns the ingest step; tracker is nil when offsets are committed
// once spans are in Redis.
func newIngester(buf *store.Buffer, clock *kafkaClock, next processor.Strategy[int], tracker *commitTracker, max int, redisTimeout time.Duration, log *zap.Logger, m safeMetrics) *ingester {
	ctx, cancel := context.WithCancel(context.Background())
	return &ingester{buf: buf, clock: clock, next: next, tracker: tracker, max: max, redisTimeout: redisTimeout, log: log, m: m, stopCtx: ctx, stop: cancel}
}

// Submit starts writing the batch in msg. It rejects while max batches are in
// flight or waiting to be forwarded.
func (s *ingester) Submit(msg processor.Message[[]processor.Message[store.Span]]) error {
	if s.stopCtx.Err() != nil {
		return errors.New("segments: ingest: submit after join or terminate")
	}
	if s.pending.Len() >= s.max {
		if err := s.pending.Forward(s.forward); err != nil && !errors.Is(err, processor.ErrMessageRejected) {
			return err
		}
		if s.pending.Len() >= s.max {
			return processor.ErrMessageRejected
		}
	}
	b := &ingestBatch{msg: msg}
	if msg.Filtered() {
		if s.tracker != nil {
			// Its offsets are committed in their place among the batches'.
			s.tracker.begin(msg.Committable, nil, msg.Timestamp)
		}
		s.pending.Push(b, nil)
		return nil
	}
	spans := make([]store.Span, len(msg.Payload))
	b.parts = make(batchTimes, 4)
	for i, m := range msg.Payload {
		spans[i] = m.Payload
		p := b.parts[m.Payload.Partition]
		if p.spans == 0 || m.Timestamp.Before(p.oldest) {
			p.oldest = m.Timestamp
		}
		p.spans++
		b.parts[m.Payload.Partition] = p
	}
	b.spans = len(spans)
	if s.tracker != nil {
		counts := make(map[int32]int, len(b.parts))
		for shard, p := range b.parts {
			counts[shard] = p.spans
		}
		b.tracked = s.tracker.begin(msg.Committable, counts, msg.Timestamp)
	}
	done := make(chan struct{})
	s.writers.Add(1)
	go s.write(b, spans, done)
	s.pending.Push(b, done)
	return nil
}

// write puts spans into Redis, again and again until it succeeds or the step stops,
// and closes done. Ingest is idempotent, so a write that failed half way is safe to
// repeat.
func (s *ingester) write(b *ingestBatch, spans []store.Span, done chan<- struct{}) {
	defer s.writers.Done()
	defer close(done)
	if b.tracked != nil {
		// Before the write is sent: see commitTracker.
		s.tracker.register(b.tracked, store.BatchSalts(spans))
	}
	var retry *time.Timer
	for {
		ctx, cancel := context.WithTimeout(s.stopCtx, s.redisTimeout)
		stats, err := s.buf.Ingest(ctx, spans, b.parts)
		cancel()
		if err == nil {
			if b.tracked != nil {
				// Spans flushed already that this batch read again: no flush will
				// report their payload sets, and nothing of them waits in Redis.
				s.tracker.cover(stats.DroppedSalts)
			}
			return
		}
		if s.stopCtx.Err() != nil {
			b.err = err
			return
		}
		s.m.count("spans.buffer.process_spans.errors", 1)
		s.log.Warn("ingesting spans failed; retrying the batch", zap.Int("spans", len(spans)), zap.Error(err))
		if retry == nil {
			retry = time.NewTimer(ingestRetryInterval)
			defer retry.Stop()
		} else {
			retry.Reset(ingestRetryInterval)
		}
		select {
		case <-retry.C:
		case <-s.stopCtx.Done():
			b.err = err
			return
		}
	}
}

// Poll polls the next step and forwards the batches at the head of the queue that
// are in Redis, without waiting for the others.
func (s *ingester) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	err := s.pending.Forward(s.forward)
	if errors.Is(err, processor.ErrMessageRejected) {
		return nil
	}
	return err
}

// forward moves the clocks of a batch that is in Redis and hands it to the next step.
func (s *ingester) forward(b *ingestBatch) error {
	if b.err != nil {
		return b.err
	}
	if b.msg.Filtered() {
		return s.next.Submit(processor.AsFiltered[int](b.msg))
	}
	if !b.clocked {
		b.clocked = true
		wall := time.Now()
		for shard, p := range b.parts {
			s.clock.ingested(shard, p.spans, p.oldest, wall)
			s.m.gauge("spans.buffer.flusher.drift", p.oldest.Sub(wall).Seconds(), shardTag(shard))
		}
	}
	return s.next.Submit(processor.WithPayload(b.msg, b.spans))
}

// Close does nothing: Join waits for the batches in flight.
func (s *ingester) Close() {}

// Join waits for each batch in flight in order and forwards it, until all are
// forwarded or ctx is done; the rest is abandoned, to be redelivered. It then stops
// the writes still running and closes and joins the next step.
func (s *ingester) Join(ctx context.Context) error {
	_, err := s.pending.Finish(ctx, s.forward, s.next.Poll)
	s.stop()
	inflight.Wait(ctx, &s.writers)
	s.pending.Clear()
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

// Terminate cancels the writes in flight, drops the batches and terminates the next
// step.
func (s *ingester) Terminate() {
	s.stop()
	s.pending.Clear()
	s.next.Terminate()
}

var _ processor.Strategy[[]processor.Message[store.Span]] = (*ingester)(nil)
