package state

import (
	"context"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// Update adds a keyed state step to a pipeline (see Step): fn computes each
// message's new value for its key, and what flows on are the Changes. key must
// return the key the input topic is partitioned by.
func Update[S, T, V any](st pipeline.Stage[S, T], cfg Config[V], key func(T) string, fn UpdateFunc[T, V]) pipeline.Stage[S, Change[T, V]] {
	return pipeline.Through(st, func(next processor.Strategy[Change[T, V]], _ []strategies.Option) (processor.Strategy[T], error) {
		return NewStep(cfg, key, fn, next)
	})
}

// Aggregate folds each key's messages into a value: a key's first message is added
// to initial(), each later one to the value so far.
func Aggregate[S, T, A any](st pipeline.Stage[S, T], cfg Config[A], key func(T) string, initial func() A, add func(A, T) (A, error)) pipeline.Stage[S, Change[T, A]] {
	var fn UpdateFunc[T, A]
	if initial != nil && add != nil {
		fn = func(_ context.Context, _ string, msg processor.Message[T], old A, found bool) (A, error) {
			if !found {
				old = initial()
			}
			return add(old, msg.Payload)
		}
	}
	return Update(st, cfg, key, fn)
}

// Reduce combines each key's messages: a key's first payload is its value, and
// each later one is combined with the value so far.
func Reduce[S, T any](st pipeline.Stage[S, T], cfg Config[T], key func(T) string, combine func(acc, in T) (T, error)) pipeline.Stage[S, Change[T, T]] {
	var fn UpdateFunc[T, T]
	if combine != nil {
		fn = func(_ context.Context, _ string, msg processor.Message[T], old T, found bool) (T, error) {
			if !found {
				return msg.Payload, nil
			}
			return combine(old, msg.Payload)
		}
	}
	return Update(st, cfg, key, fn)
}

// Count counts each key's messages. cfg.Codec defaults to Int64.
func Count[S, T any](st pipeline.Stage[S, T], cfg Config[int64], key func(T) string) pipeline.Stage[S, Change[T, int64]] {
	if cfg.Codec == nil {
		cfg.Codec = Int64{}
	}
	return Aggregate(st, cfg, key, func() int64 { return 0 }, func(n int64, _ T) (int64, error) { return n + 1, nil })
}

// KafkaKey is the key function of Kafka records: the record's key.
func KafkaKey(p processor.KafkaPayload) string { return string(p.Key) }
