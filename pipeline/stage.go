package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// Stage is a pipeline up to one point: it reads payloads of type S from the
// consumer and, at that point, carries payloads of type T. A Stage is a value that
// describes steps; nothing is built until a processor asks the Factory made by
// Commit for a chain. Building on a Stage leaves it as it was, so one Stage may
// start several pipelines.
type Stage[S, T any] struct {
	// build returns the chain from the source up to this point, in front of next.
	// inherited are the options made of the processor's instruments. It is nil for
	// a Stage that does not come from From.
	build func(next processor.Strategy[T], inherited []strategies.Option) (processor.Strategy[S], error)
	// steps are the steps up to this point, in the order data flows.
	steps []step
}

// step is one step of a pipeline as Validate and Instrument see it.
type step struct {
	// label names the step in errors: its position and operator.
	label string
	// check builds the step once, in front of a Noop, and returns its error.
	check func() error
	// producer is a Produce step's producer, which Instrument hands the
	// processor's instruments to; nil for other steps.
	producer any
}

func (s step) wrap(err error) error { return fmt.Errorf("pipeline: %s: %w", s.label, err) }

// errNilFunc is what a step given a nil function reports.
var errNilFunc = errors.New("function is nil")

// From starts a pipeline that reads payloads of type T, which must be the type the
// processor's consumer reads.
func From[T any]() Stage[T, T] {
	return Stage[T, T]{build: func(next processor.Strategy[T], _ []strategies.Option) (processor.Strategy[T], error) {
		return next, nil
	}}
}

// FromKafka starts a pipeline that reads Kafka records, as kafka.Consumer and
// franz.Consumer deliver them.
func FromKafka() Stage[processor.KafkaPayload, processor.KafkaPayload] {
	return From[processor.KafkaPayload]()
}

// then returns st followed by a step called name that build makes in front of
// the step after it. Every operator is one call of then: it numbers the step, puts
// the step's name on its errors, and lets Validate build it once.
func then[S, T, U any](st Stage[S, T], name string, producer any, build func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error)) Stage[S, U] {
	s := step{
		label: fmt.Sprintf("step %d (%s)", len(st.steps)+1, name),
		check: func() error {
			built, err := build(strategies.NewNoop[U](), nil)
			if err != nil {
				return err
			}
			// The step only had to be built; stop what it may have started.
			built.Terminate()
			return nil
		},
		producer: producer,
	}
	out := Stage[S, U]{steps: append(slices.Clip(st.steps), s)}
	if prev := st.build; prev != nil {
		out.build = func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[S], error) {
			built, err := build(next, inherited)
			if err != nil {
				return nil, s.wrap(err)
			}
			return prev(built, inherited)
		}
	}
	return out
}

// Invalid marks err as the reason a message can never be processed. A step whose
// function returns an error wrapping it reports the message invalid
// (processor.Invalid): the processor sends it to the dead-letter queue and commits
// past it. The reason is err's text, with whatever the function wrapped around it.
// Only a message read from the broker can be dead-lettered: in a step after Batch
// or Reduce an invalid batch stops the processor.
func Invalid(err error) error {
	if err == nil {
		err = errors.New("invalid message")
	}
	return invalidError{err}
}

type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }
func (e invalidError) Unwrap() error { return e.err }

// reported turns an error of a function run on m into what the step returns: an
// error marked with Invalid becomes m's *processor.InvalidMessageError.
func reported[T any](m processor.Message[T], err error) error {
	if _, ok := errors.AsType[invalidError](err); ok {
		return processor.Invalid(m, err)
	}
	return err
}

// onPayload adapts a function of payloads to one of messages, as the strategies
// take them.
func onPayload[T, U any](fn func(context.Context, T) (U, error)) func(context.Context, processor.Message[T]) (U, error) {
	return func(ctx context.Context, m processor.Message[T]) (U, error) {
		v, err := fn(ctx, m.Payload)
		if err != nil {
			return v, reported(m, err)
		}
		return v, nil
	}
}

// onMessage gives a function of messages the same treatment of Invalid.
func onMessage[T, U any](fn func(context.Context, processor.Message[T]) (U, error)) func(context.Context, processor.Message[T]) (U, error) {
	return func(ctx context.Context, m processor.Message[T]) (U, error) {
		v, err := fn(ctx, m)
		if err != nil {
			return v, reported(m, err)
		}
		return v, nil
	}
}

// with returns the options of a step: the inherited ones first, so that the step's
// own override them.
func with(inherited, own []strategies.Option) []strategies.Option {
	if len(inherited) == 0 {
		return own
	}
	return slices.Concat(inherited, own)
}
