package strategies

import (
	"context"
	"errors"
	"fmt"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

// Producer writes payloads to a topic asynchronously. It is what Produce needs of a
// Kafka producer; kafkatest.MemoryProducer is one for tests.
type Producer[T any] interface {
	// Produce starts writing payload to topic and returns the delivery, which the
	// producer resolves once the broker has acknowledged or refused the write. ctx
	// bounds any wait for room in the producer's buffer.
	Produce(ctx context.Context, topic string, payload T) *processor.Delivery
}

// DefaultMaxPendingDeliveries is how many messages Produce holds while their
// deliveries are outstanding, unless told otherwise.
const DefaultMaxPendingDeliveries = 10_000

// WithFailedDeliveriesSkipped makes Produce log a failed delivery and forward its
// message anyway, instead of failing, so that its offset is committed and the message
// is lost: use it only where losing some is acceptable. The failure is counted by the
// producer (producer.produce_status, status=error), as every delivery is.
func WithFailedDeliveriesSkipped() ProduceOption {
	return produceOnly(func(o *produceOptions) { o.skipFailed = true })
}

// WithPropagator makes Produce write the trace context of every message's context
// (Message.Context) into the headers of the record it produces, through prop: for
// the W3C traceparent, propagation.TraceContext{}. A processor given the same
// propagator (processor.Config.Propagator) has read that context from the input
// message's headers, so the output continues the input's trace. The message's own
// payload is left untouched: the headers are copied before anything is written.
//
// Only a Produce of processor.KafkaPayload has headers; for any other payload type
// nothing is injected. A nil prop is no propagator: nothing changes.
// It is an Option so that one list can be given to every step; only Produce reads it.
func WithPropagator(prop propagation.TextMapPropagator) Option {
	return sharedOption(func(o *options) { o.Propagator = prop })
}

// Produce writes every payload to a topic and forwards the message to the next step
// once its delivery is acknowledged, in the order the messages came in, so that an
// offset is committed only after everything before it is on the broker. Filtered
// messages are not produced; they wait in line behind the deliveries before them.
type Produce[T any] struct {
	producer   Producer[T]
	topic      string
	next       processor.Strategy[T]
	maxPending int
	o          produceOptions
	// inject, set by WithPropagator for KafkaPayload, writes a message's trace
	// context into its payload's headers.
	inject func(context.Context, T) T

	// ctx is given to every Produce call; it ends with Terminate or Join so that a
	// producer waiting for buffer space gives up when the strategy does.
	ctx    context.Context
	cancel context.CancelFunc

	// pending are the messages not yet forwarded, oldest first.
	pending inflight.Queue[pendingDelivery[T]]
	// failedHead is set when the next step failed the message at the head with an
	// error other than a rejection. That message is done with, as on a first offer,
	// and the next forward passes over it.
	failedHead bool
}

// pendingDelivery is a message waiting to be forwarded and, unless it is filtered,
// the delivery of its payload.
type pendingDelivery[T any] struct {
	msg      processor.Message[T]
	delivery *processor.Delivery
}

// NewProduce returns a Produce that writes payloads to topic through producer and
// forwards acknowledged messages to next. It holds at most maxPending messages
// (DefaultMaxPendingDeliveries when 0) and rejects more until the oldest are done.
func NewProduce[T any](producer Producer[T], topic string, next processor.Strategy[T], maxPending int, opts ...ProduceOption) (*Produce[T], error) {
	switch {
	case producer == nil:
		return nil, errors.New("strategies: produce: producer is nil")
	case next == nil:
		return nil, errors.New("strategies: produce: next step is nil; end the chain with CommitOffsets or Noop")
	case topic == "":
		return nil, errors.New("strategies: produce: topic is empty")
	case maxPending < 0:
		return nil, fmt.Errorf("strategies: produce: maxPending is %d; give a positive bound or 0 for the default %d", maxPending, DefaultMaxPendingDeliveries)
	case maxPending == 0:
		maxPending = DefaultMaxPendingDeliveries
	}
	o := buildProduceOptions(opts)
	ctx, cancel := context.WithCancel(context.Background())
	return &Produce[T]{
		producer:   producer,
		topic:      topic,
		next:       next,
		maxPending: maxPending,
		o:          o,
		inject:     newTraceInjector[T](o.Propagator),
		ctx:        ctx,
		cancel:     cancel,
	}, nil
}

// newTraceInjector returns the function that writes the trace context of a
// message's context into its payload under prop, or nil when prop is nil or T has
// no headers (is not KafkaPayload).
func newTraceInjector[T any](prop propagation.TextMapPropagator) func(context.Context, T) T {
	if prop == nil {
		return nil
	}
	if _, ok := any((*T)(nil)).(*processor.KafkaPayload); !ok {
		return nil
	}
	return func(ctx context.Context, payload T) T {
		kp := any(&payload).(*processor.KafkaPayload)
		kp.Headers = processor.InjectHeaders(ctx, prop, kp.Headers)
		return payload
	}
}

// Submit starts producing msg's payload, or queues a filtered msg. It rejects the
// message while maxPending messages are waiting.
func (p *Produce[T]) Submit(msg processor.Message[T]) error {
	if p.pending.Len() >= p.maxPending {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		p.pending.Push(pendingDelivery[T]{msg: msg}, nil)
		return nil
	}
	payload := msg.Payload
	if p.inject != nil {
		payload = p.inject(msg.Context(), payload)
	}
	d := p.producer.Produce(p.ctx, p.topic, payload)
	p.pending.Push(pendingDelivery[T]{msg: msg, delivery: d}, d.Done())
	return nil
}

// Poll polls the next step and forwards the messages whose deliveries are done, up to
// the first one still outstanding. It returns a delivery error unless
// WithFailedDeliveriesSkipped was given.
func (p *Produce[T]) Poll() error {
	if err := p.next.Poll(); err != nil {
		return err
	}
	return ignoreRejected(p.pending.Forward(p.forward))
}

// forward hands e, whose delivery is done, to the next step. It returns
// ErrMessageRejected when the next step rejects the message, which stays at the head.
func (p *Produce[T]) forward(e pendingDelivery[T]) error {
	if p.failedHead {
		p.failedHead = false
		return nil
	}
	var failed error
	if e.delivery != nil {
		if _, err := e.delivery.Result(); err != nil {
			if !p.o.skipFailed {
				return fmt.Errorf("strategies: produce to %s (message %s): %w", p.topic, e.msg.Committable, err)
			}
			failed = err
		}
	}
	if err := p.next.Submit(e.msg); err != nil {
		p.failedHead = !errors.Is(err, processor.ErrMessageRejected)
		return err
	}
	if failed != nil {
		// Logged once the message is forwarded, so a retry does not log it again.
		p.o.Logger.Warn("delivery failed; message skipped",
			zap.String("topic", p.topic), zap.Stringer("committable", e.msg.Committable), zap.Error(failed))
	}
	return nil
}

// Close does nothing: the deliveries in flight are waited for by Join.
func (p *Produce[T]) Close() {}

// Join waits for the outstanding deliveries in order until ctx is done, forwards
// their messages, then closes and joins the next step. Messages whose deliveries are
// still outstanding when ctx ends are abandoned and will be consumed again.
func (p *Produce[T]) Join(ctx context.Context) error {
	defer p.cancel()
	abandoned, err := p.pending.Finish(ctx, p.forward, p.next.Poll)
	if abandoned {
		p.o.Logger.Info("join timed out; abandoning outstanding deliveries", zap.String("topic", p.topic), zap.Int("messages", p.pending.Len()))
	}
	p.next.Close()
	return errors.Join(err, p.next.Join(ctx))
}

// Terminate abandons the outstanding deliveries and terminates the next step.
func (p *Produce[T]) Terminate() {
	p.cancel()
	p.pending.Clear()
	p.failedHead = false
	p.next.Terminate()
}
