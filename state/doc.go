// Package state keeps keyed state for a pipeline, in the manner of Kafka Streams'
// state stores: a step reads and writes a value per key while it processes a
// message, the values live in one goka storage.Storage per assigned partition
// (LevelDB on disk by default), and every change is written to a compacted
// changelog topic whose partition p belongs to input partition p, so that a key's
// state moves with its partition.
//
//	counts := state.Count(pipeline.FromKafka(), state.Config[int64]{
//		Name: "word-counts", Changelog: changelog, Dir: "/var/lib/wordcount",
//	}, state.KafkaKey)
//	factory := pipeline.Commit(pipeline.Produce(pipeline.Map(counts, encode), producer, "word-counts"))
//
// Update is the general step; Aggregate, Reduce, Count and WindowAggregate (tumbling
// and hopping windows of event time with a grace period) are built on it, and a
// Table reads the current values from outside the pipeline.
//
// # Restore
//
// A partition's store is opened on its first message and restored before that
// message is processed: from the changelog's start, or, for a LevelDB store left on
// disk, from the changelog offset it had reached. The step rejects the partition's
// messages while it restores, so the processor pauses the consumer instead of
// buffering. The store is closed when the partition is revoked or lost, and when
// the chain is joined.
//
// # Exact updates
//
// A message's offset is passed on (and so committed) only after the changelog has
// acknowledged the change it made. Each store keeps the last input offset it has
// applied, and each changelog record carries it in a header; a message delivered
// again after a crash or a rebalance, at or below that offset, is not applied
// again but passed on as Replayed. Counts therefore stay exact across crashes
// without transactions. The guarantee is for the state only: what later steps
// produce from the Changes is at least once, and it assumes one writer per
// partition, which a member that lost its partitions without noticing can break.
// See docs/state.md.
package state
