package processor

import (
	"context"
	"time"
)

// Message is what flows through a strategy chain: a payload of type T and the
// offsets that may be committed once it has been processed.
//
// A filtered message has no payload; it only carries its Committable forward so that
// offsets keep moving when messages are dropped. Every strategy passes filtered
// messages through untouched.
//
// Messages are values: passing one on copies a few words and allocates nothing.
type Message[T any] struct {
	Payload     T
	Committable Committable
	// Timestamp is the broker's timestamp of the message, or of the latest message a
	// batch was built from.
	Timestamp time.Time

	// ctx is the message's context (Context); nil reads as context.Background.
	ctx      context.Context
	filtered bool
	// origin is set while the message stands for exactly one broker message; its
	// position is then the single entry of Committable, less one.
	origin bool
}

// NewBrokerMessage returns the message read from partition p at offset.
func NewBrokerMessage[T any](payload T, p Partition, offset int64, ts time.Time) Message[T] {
	return Message[T]{Payload: payload, Committable: CommittableOf(p, offset+1), Timestamp: ts, origin: true}
}

// NewMessage returns a message that is not tied to a single broker message, such as a
// batch.
func NewMessage[T any](payload T, c Committable, ts time.Time) Message[T] {
	return Message[T]{Payload: payload, Committable: c, Timestamp: ts}
}

// NewFiltered returns a filtered message carrying c.
func NewFiltered[T any](c Committable, ts time.Time) Message[T] {
	return Message[T]{Committable: c, Timestamp: ts, filtered: true}
}

// Filtered reports whether m is a filtered message, which has no payload.
func (m Message[T]) Filtered() bool { return m.filtered }

// Origin returns the broker position m was read from, if m stands for exactly one
// broker message. A one-to-one transformation (WithPayload) keeps it.
func (m Message[T]) Origin() (Position, bool) {
	if !m.origin || m.Committable.n != 1 || m.Committable.many != nil {
		return Position{}, false
	}
	return Position{Partition: m.Committable.one(), Offset: m.Committable.oneOff - 1}, true
}

// WithPayload returns m with its payload replaced by p; offsets, timestamp and origin
// are kept.
func WithPayload[T, U any](m Message[T], p U) Message[U] {
	return Message[U]{Payload: p, Committable: m.Committable, Timestamp: m.Timestamp, ctx: m.ctx, origin: m.origin}
}

// AsFiltered returns a filtered message of type U with m's offsets and timestamp.
func AsFiltered[U, T any](m Message[T]) Message[U] {
	return Message[U]{Committable: m.Committable, Timestamp: m.Timestamp, ctx: m.ctx, filtered: true, origin: m.origin}
}

// Context returns the message's context, which user functions receive. The
// processor gives each message the context of its partition: it carries the values
// of the context Run was given, and it is cancelled once the message's result can no
// longer be committed (see the package documentation). A message made without one
// has context.Background.
func (m Message[T]) Context() context.Context {
	if m.ctx == nil {
		return context.Background()
	}
	return m.ctx
}

// WithContext returns m with its context replaced by ctx, which must not be nil.
func (m Message[T]) WithContext(ctx context.Context) Message[T] {
	if ctx == nil {
		panic("processor: Message.WithContext: nil context")
	}
	m.ctx = ctx
	return m
}

// BatchContext returns the context for a message built from several, given the
// context of the first of them: the context of the chain they ran through, which is
// cancelled when the chain ends rather than when one partition is revoked. Messages
// of other partitions ride in the batch, and their offsets must still be committed.
func BatchContext(first context.Context) context.Context {
	if chain, ok := first.Value(chainKey{}).(context.Context); ok {
		return chain
	}
	return first
}
