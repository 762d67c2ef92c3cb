// Package store assembles tracing spans into segments in Redis: the span buffer's
// store, with no knowledge of Kafka consumers or strategies (package segments runs
// it as a pipeline).
//
// A segment is every span of one trace that hangs under one segment root (a span
// without a parent, or marked is_segment). Spans arrive one per Kafka message, in any
// order. Decode turns a message into a Span; Buffer.Ingest adds a batch of them to
// their segments; Buffer.Flush takes the segments that have been quiet long enough
// (RootTimeout once the root has arrived, else Timeout); Buffer.Messages renders one
// as Kafka messages; Buffer.Done removes it once those messages were acknowledged.
// The span buffer's flusher workers drive the last three, each owning some shards
// (Kafka partitions).
//
// # Redis layout
//
// Every key expires after Config.TTL, refreshed on each write. {...} is the Cluster
// hash tag; P is the project id, T the trace id.
//
//	span-buf:s:{P:T:salt}:salt   set     raw payloads of one subsegment (or one zstd frame)
//	span-buf:mk:{P:T}:<root>     set     salts of the segment's payload sets
//	span-buf:ssr:{P:T}           hash    span id -> segment root id (redirects)
//	span-buf:hrs:<segment key>   string  the segment's root has arrived
//	span-buf:ic:<segment key>    string  spans ingested
//	span-buf:ibc:<segment key>   string  payload bytes ingested
//	span-buf:fl:<segment key>    string  flush lock (only with Config.FlushLockTTL)
//	span-buf:q:[<slice>-]<shard> zset    segment key -> flush deadline (Unix ms)
//	span-buf:fs:{P:T}            hash    span id -> 1: spans flushed within RedeliveryWindow
//	span-buf:marker              string  a random token: Redis still holds what the buffer wrote
//	                                     (on a Cluster span-buf:marker:{<tag>}, one per slot range)
//
// With Config.Namespace every key starts span-buf:<namespace>: instead of span-buf:,
// so several deployments can share a Redis; the Lua scripts take the prefix from
// the keys they are given.
//
// The segment key is span-buf:s:{P:T}:<root>. A trace's metadata shares one slot, so
// one Lua script updates it atomically; payload sets carry their salt in the tag so
// that a segment's bytes spread over a Cluster. The salt hashes the subsegment's span
// ids, so a retried batch rewrites the same keys and is counted once.
//
// A span read again from Kafka after its segment was flushed (its offset not yet
// committed) is left out at ingest: done.lua records the ids it removes in the
// trace's fs hash, and add.lua drops a subsegment whose spans are all there, or
// marks the ones that are ("~<id>" in the member keys) for the flush to skip.
//
// # Time
//
// Deadlines are computed from a Clock, the Kafka time of each shard, never from the
// wall clock; key expiry is Redis's own wall clock. Each partition has a Kafka time
// of its own: partitions are consumed at different rates, and a lagging one must
// not be flushed at a leading one's time.
package store
