package processor

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// Trace context. With Config.Propagator set, the processor reads the trace context
// of every Kafka message from its headers into the message's context, and the
// dead-letter queue writes it back into the headers of what it sends. Without one,
// none of this runs: the loop checks one nil function per message.

// HeaderCarrier is a propagation.TextMapCarrier over Kafka record headers, so that
// a propagator can read and write trace context in them:
//
//	ctx = prop.Extract(ctx, (*processor.HeaderCarrier)(&payload.Headers))
//
// Keys match exactly: Kafka header keys are case-sensitive. Set writes into the
// slice, so a carrier must not be made over headers that belong to someone else,
// such as those of a message read from the broker; InjectHeaders leaves its input
// alone.
type HeaderCarrier []Header

var _ propagation.TextMapCarrier = (*HeaderCarrier)(nil)

// Get returns the value of the first header named key, or "" if there is none.
func (c *HeaderCarrier) Get(key string) string {
	if i := headerIndex(*c, key); i >= 0 {
		return string((*c)[i].Value)
	}
	return ""
}

// Set makes value the value of the header named key: the first header of that name
// is overwritten and any later one removed, or else a header is appended.
func (c *HeaderCarrier) Set(key, value string) {
	hs := *c
	i := headerIndex(hs, key)
	if i < 0 {
		*c = append(hs, Header{Key: key, Value: []byte(value)})
		return
	}
	hs[i].Value = []byte(value)
	kept := hs[:i+1]
	for _, h := range hs[i+1:] {
		if h.Key != key {
			kept = append(kept, h)
		}
	}
	clear(hs[len(kept):])
	*c = kept
}

// Keys returns the keys of the headers, in order; a key repeated in the headers is
// repeated here.
func (c *HeaderCarrier) Keys() []string {
	keys := make([]string, len(*c))
	for i, h := range *c {
		keys[i] = h.Key
	}
	return keys
}

func headerIndex(hs []Header, key string) int {
	for i, h := range hs {
		if h.Key == key {
			return i
		}
	}
	return -1
}

// InjectHeaders returns headers with the trace context of ctx written into them by
// prop. headers itself is never written to: if prop sets a header that is not
// already there with the same value, the result is a new slice. When ctx carries no
// trace context (or prop writes only what is there already) headers is returned as
// it is, not copied.
func InjectHeaders(ctx context.Context, prop propagation.TextMapPropagator, headers []Header) []Header {
	c := copyOnWrite{headers: headers}
	prop.Inject(ctx, &c)
	return c.headers
}

// copyOnWrite is a carrier over headers it must not write to until it has copied
// them.
type copyOnWrite struct {
	headers []Header
	copied  bool
}

func (c *copyOnWrite) Get(key string) string { return (*HeaderCarrier)(&c.headers).Get(key) }
func (c *copyOnWrite) Keys() []string        { return (*HeaderCarrier)(&c.headers).Keys() }

func (c *copyOnWrite) Set(key, value string) {
	if !c.copied {
		if i := headerIndex(c.headers, key); i >= 0 && string(c.headers[i].Value) == value &&
			headerIndex(c.headers[i+1:], key) < 0 {
			return
		}
		// Room for what a propagator typically adds: traceparent and tracestate.
		c.headers = append(make([]Header, 0, len(c.headers)+2), c.headers...)
		c.copied = true
	}
	(*HeaderCarrier)(&c.headers).Set(key, value)
}

// newTraceExtractor returns what the loop applies to every message it polls when
// prop is set and T is KafkaPayload: the message's context with the trace context of
// its headers. It is nil otherwise, and the loop then does nothing. The result is
// prop.Extract's, a child of the partition's context: it is cancelled with it and
// has its values. A message without headers keeps its context as it is, so one
// without trace headers keeps whatever trace context Run's context carries.
func newTraceExtractor[T any](prop propagation.TextMapPropagator) func(context.Context, T) context.Context {
	if prop == nil {
		return nil
	}
	if _, ok := any((*T)(nil)).(*KafkaPayload); !ok {
		return nil
	}
	return func(ctx context.Context, payload T) context.Context {
		kp := any(&payload).(*KafkaPayload)
		if len(kp.Headers) == 0 {
			return ctx
		}
		c := HeaderCarrier(kp.Headers) // so that payload stays on the stack
		return prop.Extract(ctx, &c)
	}
}

// traceDLQ prepares msg for the dead-letter queue under prop. It returns the base of
// the context the DLQ produce runs in, which carries the message's values (its trace
// context among them) but not its cancellation, and, for KafkaPayload, the message
// with its trace context injected into a copy of its headers. A message read again
// through the consumer's Fetch has no context; its trace context is read from its
// headers.
func traceDLQ[T any](prop propagation.TextMapPropagator, msg Message[T]) (context.Context, Message[T]) {
	kp, isKafka := any(&msg.Payload).(*KafkaPayload)
	ctx := msg.ctx
	if ctx == nil {
		ctx = context.Background()
		if isKafka && len(kp.Headers) > 0 {
			c := HeaderCarrier(kp.Headers)
			ctx = prop.Extract(ctx, &c)
		}
	}
	if isKafka {
		kp.Headers = InjectHeaders(ctx, prop, kp.Headers)
	}
	return context.WithoutCancel(ctx), msg
}
