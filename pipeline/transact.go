package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// TxnProducer writes records into the Kafka transaction that its consumer's Commit
// ends, as franz.TxnConsumer does. Produce returns once the record is handed over;
// from is the offsets of the inputs the record is an output of, which the
// transaction must commit with it. A write that fails later aborts the
// transaction at its commit.
type TxnProducer interface {
	Produce(ctx context.Context, topic string, payload processor.KafkaPayload, from processor.Committable) error
}

// Transact ends the pipeline with a transactional sink: every payload is written
// to topic through producer, into the consumer's open transaction, and its
// message's offsets are staged in the same call, so that the transaction the
// consumer's Commit ends holds exactly the outputs of the offsets it commits.
// Use it with franz.TxnConsumer, which is also the producer, for exactly once from
// the input topics to topic: see docs/processor.md. The processor's CommitPolicy
// sets how often a transaction ends. Outputs of FlatMap are written when the last
// of their input's outputs arrives, which is when the input's offsets come.
func Transact[S any](st Stage[S, processor.KafkaPayload], producer TxnProducer, topic string, opts ...strategies.Option) *Factory[S] {
	s := step{
		label: fmt.Sprintf("step %d (Transact)", len(st.steps)+1),
		check: func() error {
			_, err := newTransact(producer, topic, strategies.NewNoop[processor.KafkaPayload]())
			return err
		},
	}
	f := &Factory[S]{steps: append(st.steps[:len(st.steps):len(st.steps)], s)}
	if build := st.build; build != nil {
		f.build = func(commit processor.CommitFunc, inherited []strategies.Option) (processor.Strategy[S], error) {
			sink, err := newTransact(producer, topic, strategies.NewCommitOffsets[processor.KafkaPayload](commit, with(inherited, opts)...))
			if err != nil {
				return nil, s.wrap(err)
			}
			return build(sink, inherited)
		}
	}
	return f
}

// transact writes payloads into the open transaction and hands their messages on
// at once to the step that stages their offsets. It runs on the processor's loop,
// between commits, so a commit sees every output of the offsets it commits.
type transact struct {
	producer TxnProducer
	topic    string
	next     processor.Strategy[processor.KafkaPayload]
	// ctx bounds a wait for room in the producer's buffer; Terminate ends it.
	ctx    context.Context
	cancel context.CancelFunc
	// held are outputs that carry no offsets (all but the last of a FlatMap
	// input's), written once the message carrying their input's offsets comes.
	held []processor.Message[processor.KafkaPayload]
}

func newTransact(producer TxnProducer, topic string, next processor.Strategy[processor.KafkaPayload]) (*transact, error) {
	switch {
	case producer == nil:
		return nil, errors.New("producer is nil; give the franz.TxnConsumer that reads the input")
	case topic == "":
		return nil, errors.New("topic is empty")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &transact{producer: producer, topic: topic, next: next, ctx: ctx, cancel: cancel}, nil
}

// Submit writes msg's payload, and those held for it, into the transaction and
// stages msg's offsets.
func (t *transact) Submit(msg processor.Message[processor.KafkaPayload]) error {
	if msg.Committable.Len() == 0 {
		if !msg.Filtered() {
			t.held = append(t.held, msg)
		}
		return nil
	}
	for i, h := range t.held {
		if err := t.producer.Produce(t.ctx, t.topic, h.Payload, msg.Committable); err != nil {
			t.held = t.held[i:]
			return fmt.Errorf("pipeline: transact to %s: %w", t.topic, err)
		}
	}
	clear(t.held)
	t.held = t.held[:0]
	if !msg.Filtered() {
		if err := t.producer.Produce(t.ctx, t.topic, msg.Payload, msg.Committable); err != nil {
			return fmt.Errorf("pipeline: transact to %s (message %s): %w", t.topic, msg.Committable, err)
		}
	}
	return t.next.Submit(msg)
}

// Poll lets the commit policy commit what is staged.
func (t *transact) Poll() error { return t.next.Poll() }

// Close does nothing: nothing is in flight here.
func (t *transact) Close() {}

// Join commits what is staged, ending the transaction.
func (t *transact) Join(ctx context.Context) error {
	defer t.cancel()
	t.next.Close()
	return t.next.Join(ctx)
}

// Terminate drops held outputs and terminates the next step; the consumer aborts
// what the transaction holds.
func (t *transact) Terminate() {
	t.cancel()
	t.held = nil
	t.next.Terminate()
}
