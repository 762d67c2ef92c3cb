package state

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// UpdateFunc computes a key's new value from its current one and a message. found
// is false when the key has no value yet; old is then V's zero value. An error made
// with processor.Invalid sends the message to the dead-letter queue; any other error
// stops the processor.
type UpdateFunc[T, V any] func(ctx context.Context, key string, msg processor.Message[T], old V, found bool) (V, error)

// Change is what a state step passes on for each message: the key, its value after
// the message, and the message's payload.
type Change[T, V any] struct {
	Key   string
	Value V
	Input T
	// Replayed is true for a message delivered again after a crash or a rebalance
	// whose change the store holds already: it was not applied again, and Value is
	// the key's current value.
	Replayed bool
}

// Step is the strategy of keyed state: for each message it reads the value of the
// message's key from the store of the message's partition, applies an UpdateFunc,
// writes the result to the store's changelog, and passes a Change on once the
// changelog has acknowledged the write, so that no offset is committed before the
// state it produced is safe.
//
// Stores are opened on a partition's first message and restored from the changelog
// in the background; the step rejects the partition's messages meanwhile, which makes
// the processor pause. A store is closed when its partition's messages' context is
// cancelled (the processor does so on revocation and loss) and when the step is
// joined or terminated.
//
// Like every strategy it is driven from the processor's loop goroutine, which owns
// its state; each restore goroutine owns its store until it hands it over.
type Step[T, V any] struct {
	cfg  Config[V]
	key  func(T) string
	fn   UpdateFunc[T, V]
	next processor.Strategy[Change[T, V]]

	// topic is the input topic; a state serves one.
	topic string
	parts map[int32]*partition[T, V]
	// queue holds every message taken, in order, until its change is acknowledged
	// and it is passed on.
	queue inflight.Queue[*entry[T, V]]
}

// entry is one message in the step: its change, if it made one, and what is passed
// on.
type entry[T, V any] struct {
	// part is nil for a filtered message.
	part *partition[T, V]
	out  processor.Message[Change[T, V]]
	key  string
	// value is the encoded new value; nil when the message wrote nothing (a
	// replayed or filtered one).
	value   []byte
	applied int64

	// done is closed when the changelog has answered; offset and err are set
	// before.
	done   chan struct{}
	offset int64
	err    error
	// stored is set once the change is in the store.
	stored bool
}

func (e *entry[T, V]) finish(offset int64, err error) {
	e.offset, e.err = offset, err
	close(e.done)
}

// NewStep returns the step of cfg that passes its Changes to next. key returns the
// state key of a payload: it must be the key the input topic is partitioned by, so
// that a key's messages and its state are in one partition.
func NewStep[T, V any](cfg Config[V], key func(T) string, fn UpdateFunc[T, V], next processor.Strategy[Change[T, V]]) (*Step[T, V], error) {
	cfg, err := cfg.resolved()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if key == nil {
		errs = append(errs, fmt.Errorf("state: %s: key function is nil; give one that returns a payload's key", cfg.Name))
	}
	if fn == nil {
		errs = append(errs, fmt.Errorf("state: %s: update function is nil", cfg.Name))
	}
	if next == nil {
		errs = append(errs, fmt.Errorf("state: %s: next step is nil", cfg.Name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Step[T, V]{cfg: cfg, key: key, fn: fn, next: next, parts: map[int32]*partition[T, V]{}}, nil
}

// Submit applies msg to its key's state and sends the change to the changelog. It
// rejects msg while the store of its partition is restoring and while MaxInFlight
// messages wait for their changelog writes. A message at or below the offset the
// store has applied is passed on as Replayed without changing anything.
func (s *Step[T, V]) Submit(msg processor.Message[T]) error {
	if s.queue.Len() >= s.cfg.MaxInFlight {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		// Behind the changes before it, so that its offset is not committed first.
		s.queue.Push(&entry[T, V]{out: processor.AsFiltered[Change[T, V]](msg)}, nil)
		return nil
	}
	pos, ok := msg.Origin()
	if !ok {
		return fmt.Errorf("state: %s: the message is not one read from the broker; keyed state needs each message's offset, so put the step before Batch, Reduce or FlatMap", s.cfg.Name)
	}
	p, err := s.partition(msg.Context(), pos.Partition)
	if err != nil {
		return err
	}
	if p.st == nil {
		return processor.ErrMessageRejected
	}
	key := s.key(msg.Payload)
	if key == positionKey {
		return processor.Invalid(msg, fmt.Errorf("state: %s: key %q is reserved for the store's position", s.cfg.Name, key))
	}
	old, found, err := s.read(p, key)
	if err != nil {
		return err
	}
	if pos.Offset <= p.applied && !s.cfg.ReapplyReplayed {
		s.cfg.Metrics.Increment("state.replayed_messages", 1)
		s.queue.Push(&entry[T, V]{part: p, out: processor.WithPayload(msg, Change[T, V]{Key: key, Value: old, Input: msg.Payload, Replayed: true})}, nil)
		return nil
	}
	v, err := s.fn(msg.Context(), key, msg, old, found)
	if err != nil {
		if _, ok := processor.AsInvalid(err); ok {
			return err
		}
		return fmt.Errorf("state: %s: update function: %w", s.cfg.Name, err)
	}
	enc, err := s.cfg.Codec.Encode(v)
	if err == nil && enc == nil {
		err = errNilValue
	}
	if err != nil {
		return processor.Invalid(msg, fmt.Errorf("state: %s: encode value of key %q: %w", s.cfg.Name, key, err))
	}
	e := &entry[T, V]{
		part: p, key: key, value: enc, applied: pos.Offset, done: make(chan struct{}),
		out: processor.WithPayload(msg, Change[T, V]{Key: key, Value: v, Input: msg.Payload}),
	}
	p.applied = pos.Offset
	p.dirty[key] = e
	s.queue.Push(e, e.done)
	s.cfg.Changelog.Append(pos.Partition.Index, Record{Key: []byte(key), Value: enc, Applied: pos.Offset}, e.finish)
	return nil
}

// partition returns the state of part, opening its store if needed; ctx is the
// context of a message of part.
func (s *Step[T, V]) partition(ctx context.Context, part processor.Partition) (*partition[T, V], error) {
	if s.topic == "" {
		s.topic = part.Topic
	} else if part.Topic != s.topic {
		return nil, fmt.Errorf("state: %s: a message of topic %s after messages of %s; a state serves one input topic, whose partitions its changelog's match", s.cfg.Name, part.Topic, s.topic)
	}
	p := s.parts[part.Index]
	if p != nil && p.ctx.Err() != nil {
		// Revoked and given back: what the old store missed meanwhile is in the
		// changelog.
		if err := s.drop(p); err != nil {
			return nil, err
		}
		p = nil
	}
	if p == nil {
		p = s.open(ctx, part)
		s.parts[part.Index] = p
	}
	if _, err := s.ready(p); err != nil {
		return nil, err
	}
	return p, nil
}

// read returns the current value of key in p.
func (s *Step[T, V]) read(p *partition[T, V], key string) (V, bool, error) {
	var v V
	b := []byte(nil)
	if e, ok := p.dirty[key]; ok {
		b = e.value
	} else {
		var err error
		if b, err = p.st.Get(key); err != nil {
			return v, false, fmt.Errorf("state: %s: read key %q of %s: %w", s.cfg.Name, key, p.part, err)
		}
	}
	if b == nil {
		return v, false, nil
	}
	v, err := s.cfg.Codec.Decode(b)
	if err != nil {
		return v, false, fmt.Errorf("state: %s: decode value of key %q of %s: %w", s.cfg.Name, key, p.part, err)
	}
	return v, true, nil
}

// emit stores e's change once the changelog has it and passes e on.
func (s *Step[T, V]) emit(e *entry[T, V]) error {
	p := e.part
	if p != nil && !e.stored {
		if e.err != nil {
			return fmt.Errorf("state: %s: %w", s.cfg.Name, e.err)
		}
		e.stored = true
		if !p.closed && e.value != nil {
			if err := p.st.Set(e.key, e.value); err != nil {
				return fmt.Errorf("state: %s: write key %q of %s: %w", s.cfg.Name, e.key, p.part, err)
			}
			if err := writePosition(p.st, position{next: e.offset + 1, applied: e.applied}); err != nil {
				return fmt.Errorf("state: %s: write position of %s: %w", s.cfg.Name, p.part, err)
			}
			if p.dirty[e.key] == e {
				delete(p.dirty, e.key)
			}
		}
	}
	if p != nil && p.closed {
		return nil // its partition is gone; nothing of it may be committed
	}
	return s.next.Submit(e.out)
}

// Poll takes finished restores, closes the stores of revoked partitions, passes on
// the messages whose changes are acknowledged, and polls the next step.
func (s *Step[T, V]) Poll() error {
	for idx, p := range s.parts {
		if p.ctx.Err() != nil {
			delete(s.parts, idx)
			if err := s.drop(p); err != nil {
				return err
			}
			continue
		}
		if _, err := s.ready(p); err != nil {
			return err
		}
	}
	if err := s.queue.Forward(s.emit); err != nil && !errors.Is(err, processor.ErrMessageRejected) {
		return err
	}
	return s.next.Poll()
}

// drop closes p, which its partition no longer owns.
func (s *Step[T, V]) drop(p *partition[T, V]) error {
	s.cfg.Logger.Info("state: closing store of a revoked partition", zap.String("state", s.cfg.Name), zap.Stringer("partition", p.part))
	return s.close(p)
}

// Close does nothing: Join finishes what is in flight.
func (s *Step[T, V]) Close() {}

// Join waits for the changelog writes in flight and passes their messages on until
// ctx is done, closes every store, then closes and joins the next step.
func (s *Step[T, V]) Join(ctx context.Context) error {
	abandoned, err := s.queue.Finish(ctx, s.emit, s.next.Poll)
	if abandoned {
		s.cfg.Logger.Warn("state: join timed out with changelog writes in flight; their messages will be redelivered",
			zap.String("state", s.cfg.Name), zap.Int("messages", s.queue.Len()))
	}
	s.queue.Clear()
	err = errors.Join(err, s.closeAll())
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

// Terminate closes every store, dropping what is in flight, and terminates the next
// step.
func (s *Step[T, V]) Terminate() {
	s.queue.Clear()
	if err := s.closeAll(); err != nil {
		s.cfg.Logger.Error("state: closing stores", zap.String("state", s.cfg.Name), zap.Error(err))
	}
	s.next.Terminate()
}

func (s *Step[T, V]) closeAll() error {
	var errs []error
	for idx, p := range s.parts {
		errs = append(errs, s.close(p))
		delete(s.parts, idx)
	}
	return errors.Join(errs...)
}
