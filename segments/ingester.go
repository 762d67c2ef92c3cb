package segments

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
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
// owns pending; the goroutine writing a batch owns its err until it closes done.
type ingester struct {
	f    *Factory
	fl   *Flusher[int]
	next processor.Strategy[int]
	max  int

	pending []*ingestBatch

	// stop cancels every write in flight when the step is joined or terminated.
	stopCtx context.Context
	stop    context.CancelFunc
	writers sync.WaitGroup
}

// ingestBatch is one batch on its way to Redis.
type ingestBatch struct {
	msg   processor.Message[[]processor.Message[Span]]
	parts map[int32]partitionTime
	spans int
	// done is closed once the batch is in Redis, or the step stopped first (err set);
	// nil for a filtered message, which needs no write.
	done chan struct{}
	err  error
	// clocked says the partitions' clocks have moved past the batch already, so a
	// batch the next step rejected does not move them twice.
	clocked bool
}

func newIngester(f *Factory, fl *Flusher[int], next processor.Strategy[int], max int) *ingester {
	ctx, cancel := context.WithCancel(context.Background())
	return &ingester{f: f, fl: fl, next: next, max: max, stopCtx: ctx, stop: cancel}
}

// Submit starts writing the batch in msg. It rejects while max batches are in
// flight or waiting to be forwarded.
func (s *ingester) Submit(msg processor.Message[[]processor.Message[Span]]) error {
	if s.stopCtx.Err() != nil {
		return errors.New("segments: ingest: submit after join or terminate")
	}
	if len(s.pending) >= s.max {
		if err := s.forwardReady(); err != nil && !errors.Is(err, processor.ErrMessageRejected) {
			return err
		}
		if len(s.pending) >= s.max {
			return processor.ErrMessageRejected
		}
	}
	b := &ingestBatch{msg: msg}
	if !msg.Filtered() {
		b.done = make(chan struct{})
		spans := make([]Span, len(msg.Payload))
		b.parts = make(map[int32]partitionTime, 4)
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
		now := make(map[int32]time.Time, len(b.parts))
		for shard, p := range b.parts {
			now[shard] = p.oldest
		}
		s.writers.Add(1)
		go s.write(b, spans, now)
	}
	s.pending = append(s.pending, b)
	return nil
}

// write puts spans into Redis, again and again until it succeeds or the step stops.
// Ingest is idempotent, so a write that failed half way is safe to repeat.
func (s *ingester) write(b *ingestBatch, spans []Span, now map[int32]time.Time) {
	defer s.writers.Done()
	defer close(b.done)
	var retry *time.Timer
	for {
		ctx, cancel := context.WithTimeout(s.stopCtx, s.f.cfg.Flusher.RedisTimeout)
		err := s.f.buf.ProcessSpansAt(ctx, spans, now)
		cancel()
		if err == nil {
			return
		}
		if s.stopCtx.Err() != nil {
			b.err = err
			return
		}
		s.f.m.Increment("spans.buffer.process_spans.errors", 1)
		s.f.log.Warn("ingesting spans failed; retrying the batch", zap.Int("spans", len(spans)), zap.Error(err))
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
	err := s.forwardReady()
	if errors.Is(err, processor.ErrMessageRejected) {
		return nil
	}
	return err
}

// forwardReady forwards the finished batches at the head of the queue. It returns
// ErrMessageRejected if the next step rejected one, which stays at the head.
func (s *ingester) forwardReady() error {
	for len(s.pending) > 0 {
		b := s.pending[0]
		if b.done != nil {
			select {
			case <-b.done:
			default:
				return nil
			}
		}
		if err := s.forward(b); err != nil {
			return err
		}
	}
	return nil
}

// forward moves the clocks of a batch that is in Redis and hands it to the next step.
func (s *ingester) forward(b *ingestBatch) error {
	if b.err != nil {
		return b.err
	}
	if b.msg.Filtered() {
		if err := s.next.Submit(processor.AsFiltered[int](b.msg)); err != nil {
			return err
		}
		s.pop()
		return nil
	}
	if !b.clocked {
		b.clocked = true
		wall := time.Now()
		for shard, p := range b.parts {
			s.fl.clock.ingested(shard, p.spans, p.oldest, wall)
			s.fl.gauge("spans.buffer.flusher.drift", p.oldest.Sub(wall).Seconds(), shardTag(shard))
		}
	}
	if err := s.next.Submit(processor.WithPayload(b.msg, b.spans)); err != nil {
		return err
	}
	s.pop()
	return nil
}

func (s *ingester) pop() {
	s.pending[0] = nil
	s.pending = s.pending[1:]
}

// Close does nothing: Join waits for the batches in flight.
func (s *ingester) Close() {}

// Join waits for each batch in flight in order and forwards it, until all are
// forwarded or ctx is done; the rest is abandoned, to be redelivered. It then stops
// the writes still running and closes and joins the next step.
func (s *ingester) Join(ctx context.Context) error {
	err := s.finish(ctx)
	s.stop()
	s.waitWriters(ctx)
	s.pending = nil
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

func (s *ingester) finish(ctx context.Context) error {
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for len(s.pending) > 0 {
		if b := s.pending[0]; b.done != nil {
			select {
			case <-b.done:
			case <-ctx.Done():
				return nil
			}
		}
		err := s.forwardReady()
		if err == nil {
			continue
		}
		if !errors.Is(err, processor.ErrMessageRejected) {
			return err
		}
		if err := s.next.Poll(); err != nil {
			return err
		}
		if retry == nil {
			retry = time.NewTimer(ingestRetryInterval)
		} else {
			retry.Reset(ingestRetryInterval)
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// waitWriters waits for the cancelled writes to return, or until ctx is done.
func (s *ingester) waitWriters(ctx context.Context) {
	exited := make(chan struct{})
	go func() {
		s.writers.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
	}
}

// Terminate cancels the writes in flight, drops the batches and terminates the next
// step.
func (s *ingester) Terminate() {
	s.stop()
	s.pending = nil
	s.next.Terminate()
}

var _ processor.Strategy[[]processor.Message[Span]] = (*ingester)(nil)
