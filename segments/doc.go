// Package segments is the span buffer: a consumer that reads tracing spans from
// Kafka, assembles them into segments in Redis and emits each finished segment to
// Kafka. Package store holds the Redis side (span model, decoding, layout, Lua
// scripts, ingest, flush, output); this package runs it as a strategy chain:
//
//	decode -> Batch -> ingest -> flusher -> commit gate -> CommitOffsets
//
// By default a batch's offsets are committed only once every segment it wrote
// into has been produced (CommitAfterFlush): Kafka is the log of record and Redis a
// working set, so when Redis loses its data (ErrRedisLost) the consumer reads the
// partitions again from their committed offsets.
//
// NewConsumer is the ready-made service: a Kafka consumer, a StreamProcessor with
// the Factory below and a dead-letter queue for spans that do not decode. Factory is
// the chain alone, for a service that wires its own processor.
//
// # Time
//
// Each partition (shard) has a Kafka clock of its own, kept by the chain's
// kafkaClock: decode holds every span read until ingest has put it in Redis, ingest
// moves a partition's clock to its batch's Kafka time, and the flusher's workers
// flush each shard at its clock's time. A backlog is not flushed early, and a
// lagging partition is not flushed at a leading one's time.
//
// # The flusher
//
// Workers, goroutines that each own some shards, flush due segments, produce them,
// wait for the acknowledgements and only then remove them from Redis. A supervisor
// replaces a worker that died or stopped reporting, never letting two run on the
// same shards. The flusher starts without holding the assignment callback: until
// every worker has reported healthy it rejects messages, so the consumer pauses.
package segments
