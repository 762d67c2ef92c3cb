package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// pendingPerWorker is how many messages MapConcurrent holds per goroutine: room for
// the others to run ahead of a slow message, since results leave in order.
const pendingPerWorker = 8

// Map maps every payload through fn (strategies.RunTask). An error from fn stops the
// processor, unless it wraps Invalid.
func Map[S, T, U any](st Stage[S, T], fn func(context.Context, T) (U, error), opts ...strategies.Option) Stage[S, U] {
	return then(st, "Map", nil, func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error) {
		if fn == nil {
			return nil, errNilFunc
		}
		return strategies.NewRunTask(onPayload(fn), next, with(inherited, opts)...), nil
	})
}

// MapMessage is Map for a function that needs the message around the payload: its
// offsets (Message.Origin) or its timestamp.
func MapMessage[S, T, U any](st Stage[S, T], fn func(context.Context, processor.Message[T]) (U, error), opts ...strategies.Option) Stage[S, U] {
	return then(st, "MapMessage", nil, func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error) {
		if fn == nil {
			return nil, errNilFunc
		}
		return strategies.NewRunTask(onMessage(fn), next, with(inherited, opts)...), nil
	})
}

// MapConcurrent maps payloads through fn on concurrency goroutines and hands the
// results on in the order the messages came (strategies.RunTaskConcurrently). It
// holds at most 8 messages per goroutine, running or waiting for their turn, and
// rejects more. Use it for slow I/O; fn must be safe for concurrent use.
func MapConcurrent[S, T, U any](st Stage[S, T], fn func(context.Context, T) (U, error), concurrency int, opts ...strategies.Option) Stage[S, U] {
	return then(st, "MapConcurrent", nil, func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error) {
		if fn == nil {
			return nil, errNilFunc
		}
		return strategies.NewRunTaskConcurrently(onPayload(fn), concurrency, pendingPerWorker*max(concurrency, 1), next, with(inherited, opts)...)
	})
}

// Filter hands on the payloads for which keep returns true and drops the others
// (strategies.Filter). The offsets of dropped messages are committed at the pace of
// processor.DefaultCommitPolicy, so a partition whose messages are all dropped still
// moves on.
func Filter[S, T any](st Stage[S, T], keep func(context.Context, T) bool, opts ...strategies.Option) Stage[S, T] {
	return then(st, "Filter", nil, func(next processor.Strategy[T], inherited []strategies.Option) (processor.Strategy[T], error) {
		if keep == nil {
			return nil, errNilFunc
		}
		pred := func(ctx context.Context, m processor.Message[T]) bool { return keep(ctx, m.Payload) }
		return strategies.NewFilterWithCommitPolicy(pred, processor.DefaultCommitPolicy(), next, with(inherited, opts)...)
	})
}

// FlatMap turns every payload into any number of payloads (strategies.Unfold). The
// input's offsets are committed once the last of its outputs has been processed; an
// input that yields none is committed as a dropped one.
func FlatMap[S, T, U any](st Stage[S, T], fn func(context.Context, T) ([]U, error), opts ...strategies.Option) Stage[S, U] {
	return then(st, "FlatMap", nil, func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error) {
		if fn == nil {
			return nil, errNilFunc
		}
		return strategies.NewUnfold(onPayload(fn), next, with(inherited, opts)...), nil
	})
}

// Batch collects payloads into slices of up to maxSize, handing a slice on when it is
// full or maxWait after its first payload, whichever comes first (a zero limit is no
// limit; one must be set). A batch's offsets are committed once it has been
// processed. Use BatchMessages to keep each message's offsets and timestamp.
func Batch[S, T any](st Stage[S, T], maxSize int, maxWait time.Duration, opts ...strategies.Option) Stage[S, []T] {
	return then(st, "Batch", nil, func(next processor.Strategy[[]T], inherited []strategies.Option) (processor.Strategy[T], error) {
		initial := func() []T { return make([]T, 0, maxSize) }
		add := func(b []T, m processor.Message[T]) ([]T, error) { return append(b, m.Payload), nil }
		return strategies.NewReduce(limits[T](maxSize, maxWait), add, initial, next, with(inherited, opts)...)
	})
}

// BatchMessages is Batch keeping the messages (strategies.Batch), for a step that
// needs each one's offsets or timestamp.
func BatchMessages[S, T any](st Stage[S, T], maxSize int, maxWait time.Duration, opts ...strategies.Option) Stage[S, []processor.Message[T]] {
	return then(st, "BatchMessages", nil, func(next processor.Strategy[[]processor.Message[T]], inherited []strategies.Option) (processor.Strategy[T], error) {
		return strategies.NewBatch(limits[T](maxSize, maxWait), next, with(inherited, opts)...)
	})
}

// Reduce folds payloads into an accumulator that initial starts, handing it on at
// the limits of Batch (strategies.Reduce). An error from accumulate stops the
// processor, unless it wraps Invalid.
func Reduce[S, T, A any](st Stage[S, T], maxSize int, maxWait time.Duration, accumulate func(A, T) (A, error), initial func() A, opts ...strategies.Option) Stage[S, A] {
	return then(st, "Reduce", nil, func(next processor.Strategy[A], inherited []strategies.Option) (processor.Strategy[T], error) {
		if accumulate == nil || initial == nil {
			return nil, errors.New("accumulate or initial function is nil")
		}
		add := func(acc A, m processor.Message[T]) (A, error) {
			out, err := accumulate(acc, m.Payload)
			if err != nil {
				return out, reported(m, err)
			}
			return out, nil
		}
		return strategies.NewReduce(limits[T](maxSize, maxWait), add, initial, next, with(inherited, opts)...)
	})
}

func limits[T any](maxSize int, maxWait time.Duration) strategies.BatchLimits[T] {
	return strategies.BatchLimits[T]{MaxSize: maxSize, MaxWait: maxWait}
}

// Produce writes every payload to topic through producer and hands the message on
// once the write is acknowledged, in order (strategies.Produce), so that an offset is
// committed only after its output is on the broker. A failed write stops the
// processor unless strategies.WithFailedDeliveriesSkipped is given. A producer that
// is processor.Instrumented, as the Kafka producers are, gets the processor's
// instruments.
func Produce[S, T any](st Stage[S, T], producer strategies.Producer[T], topic string, opts ...strategies.ProduceOption) Stage[S, T] {
	return then(st, "Produce", producer, func(next processor.Strategy[T], inherited []strategies.Option) (processor.Strategy[T], error) {
		all := make([]strategies.ProduceOption, 0, len(inherited)+len(opts))
		for _, o := range inherited {
			all = append(all, o)
		}
		return strategies.NewProduce(producer, topic, next, 0, append(all, opts...)...)
	})
}

// Healthcheck tells live, on every poll of the chain, that the processor's loop is
// running (strategies.Healthcheck); serve live.Handler for a liveness probe. live is
// built once with strategies.NewLiveness and shared by every chain.
func Healthcheck[S, T any](st Stage[S, T], live *strategies.Liveness) Stage[S, T] {
	return then(st, "Healthcheck", nil, func(next processor.Strategy[T], _ []strategies.Option) (processor.Strategy[T], error) {
		if live == nil {
			return nil, errors.New("liveness is nil; make one with strategies.NewLiveness")
		}
		return strategies.NewHealthcheck(live, next), nil
	})
}

// Through puts a strategy of your own, or one of package strategies that no
// operator covers, into the pipeline: build makes it in front of next, the step
// after it. opts are the options the processor's instruments make, followed by the
// step's own; hand them to a strategy of package strategies. build runs once more
// when the pipeline is validated, in front of a step that discards, and what it
// returns is then terminated.
func Through[S, T, U any](st Stage[S, T], build func(next processor.Strategy[U], opts []strategies.Option) (processor.Strategy[T], error), opts ...strategies.Option) Stage[S, U] {
	return then(st, "Through", nil, func(next processor.Strategy[U], inherited []strategies.Option) (processor.Strategy[T], error) {
		if build == nil {
			return nil, errNilFunc
		}
		s, err := build(next, with(inherited, opts))
		if err == nil && s == nil {
			return nil, errors.New("build returned no strategy and no error")
		}
		return s, err
	})
}
