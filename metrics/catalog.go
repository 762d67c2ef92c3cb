package metrics

import "slices"

//go:generate go run ./internal/gendoc -doc ../docs/metrics.md

// Type says how to read the values of a metric.
type Type uint8

const (
	// TypeCounter is a count recorded with Increment; values add up.
	TypeCounter Type = iota + 1
	// TypeGauge is a level recorded with Gauge; the last value holds.
	TypeGauge
	// TypeTimingTotal is a Timing whose value is the time spent in an activity
	// during one flush interval of a Buffer (Arroyo's meaning), not the duration
	// of one operation; values add up to the time spent.
	TypeTimingTotal
	// TypeTimingObservation is a Timing whose value is the duration of one
	// operation.
	TypeTimingObservation
)

// String returns the type as docs/metrics.md names it.
func (t Type) String() string {
	switch t {
	case TypeCounter:
		return "counter"
	case TypeGauge:
		return "gauge"
	case TypeTimingTotal:
		return "timing (buffered total)"
	case TypeTimingObservation:
		return "timing (one operation)"
	}
	return "unknown"
}

// Description is what an operator needs to read one metric creek emits.
type Description struct {
	// Name is the name as recorded, without a backend's prefix: the DogStatsD
	// name, e.g. "consumer.poll.time".
	Name string
	// Type says whether values add up, hold, or time one operation.
	Type Type
	// Unit is a base unit (seconds, bytes, ratio) or, for counts and sizes, what
	// is counted.
	Unit string
	// Tags are the tags every value carries.
	Tags []TagDescription
	// Meaning says what a value is, for an operator reading it.
	Meaning string
	// Source is the package that records the metric, as a path in the module; its
	// sub-packages may record it too ("kafka" covers both Kafka backends).
	Source string
}

// TagDescription describes one tag of a metric.
type TagDescription struct {
	// Key is the tag's key as recorded.
	Key string
	// Values are the values the tag takes; empty when they are not a fixed set,
	// such as topics or shards.
	Values []string
}

// Catalog returns a description of every metric creek emits, grouped by the
// package that records it. Backends and dashboards outside creek need it to know,
// for instance, that a buffered timing is a per-interval total to be summed and not
// a duration to be put in a histogram. The result is a copy the caller may change.
func Catalog() []Description {
	out := slices.Clone(catalog)
	for i := range out {
		out[i].Tags = slices.Clone(out[i].Tags)
		for j := range out[i].Tags {
			out[i].Tags[j].Values = slices.Clone(out[i].Tags[j].Values)
		}
	}
	return out
}

// catalog is the one list of creek's metrics. docs/metrics.md's tables are
// generated from it, and a test scans the code so that a metric recorded but not
// listed, or listed but no longer recorded, fails the build.
var catalog = []Description{
	// The consumer loop, through its metrics buffer.
	{Name: "consumer.run.count", Type: TypeCounter, Unit: "iterations", Source: "processor",
		Meaning: "loop iterations"},
	{Name: "consumer.poll.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent in polls that may wait: the clock is read before and after every poll of a consumer that has nothing at hand (`Buffered()` is 0, or the consumer cannot tell). A poll the consumer answers from messages it already holds (`kafka.Consumer` between fetched batches) takes well under a microsecond, is not timed and counts as processing time"},
	{Name: "consumer.processing.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "the loop's time outside those polls: strategy Poll and Submit, commits, and polls answered from held messages. The loop reads the clock every 256 iterations and at least every 10 ms besides the waiting polls, and adds the time between two readings minus the waiting polls in it: the sum over a run is exact, but a second's figure may include up to 10 ms (or 256 iterations) of the second before"},
	{Name: "consumer.backpressure.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent waiting while the strategy rejected messages"},
	{Name: "consumer.dlq.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent handling invalid messages (DLQ)"},
	{Name: "consumer.join.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent joining strategies (rebalance, shutdown)"},
	{Name: "consumer.callback.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent in rebalance callbacks"},
	{Name: "consumer.shutdown.time", Type: TypeTimingTotal, Unit: "seconds", Source: "processor",
		Meaning: "time spent shutting down"},
	{Name: "consumer.invalid_message.count", Type: TypeCounter, Unit: "messages", Source: "processor",
		Meaning: "invalid messages reported by strategies"},
	{Name: "consumer.pause", Type: TypeCounter, Unit: "pauses", Source: "processor",
		Meaning: "times all partitions were paused after sustained backpressure"},
	{Name: "consumer.resume", Type: TypeCounter, Unit: "resumes", Source: "processor",
		Meaning: "times paused partitions were resumed"},
	{Name: "consumer.dlq.dropped_messages", Type: TypeCounter, Unit: "messages", Source: "processor",
		Meaning: "invalid messages given up after DLQPolicy.GiveUpAfter with OnGiveUp DLQSkip: not in the DLQ, and committed past"},
	{Name: "consumer.dlq.failed_deliveries", Type: TypeCounter, Unit: "deliveries", Source: "processor",
		Meaning: "DLQ deliveries (or reads of the raw message) that failed; each is tried again with backoff while its partition is paused"},
	{Name: "consumer.dlq.refetched", Type: TypeCounter, Unit: "messages", Source: "processor",
		Meaning: "invalid messages evicted from the DLQ buffer and fetched again by offset"},
	{Name: "consumer.dlq_buffer.len", Type: TypeGauge, Unit: "messages", Source: "processor",
		Meaning: "raw messages held for the DLQ"},
	{Name: "consumer.lag", Type: TypeGauge, Unit: "messages", Source: "processor",
		Tags:    []TagDescription{{Key: "topic"}, {Key: "partition"}},
		Meaning: "high watermark minus the group's committed offset, per assigned partition: what Burrow and kafka-lag-exporter call lag, and the figure to alert on (see \"Consumer lag\" below). The committed offset is the processor's last commit of the partition, or until then the one the group had when the partition was assigned; a partition the group has never committed gets no value until its first commit. Set about once a second from the high watermarks the consumer has from its fetches and from a ListOffsets every 5 s (so also while paused or idle); a revoked partition's series is dropped"},
	{Name: "consumer.position_lag", Type: TypeGauge, Unit: "messages", Source: "processor",
		Tags:    []TagDescription{{Key: "topic"}, {Key: "partition"}},
		Meaning: "high watermark minus the position the loop has reached in the partition: the next offset after the last message submitted to the strategy, or the committed offset before the first. `consumer.lag` minus this is work submitted but not committed yet; a position lag that grows means the consumer does not read fast enough or is paused by backpressure. Set with `consumer.lag`, and not set when neither a submitted nor a committed offset is known"},
	{Name: "consumer.dlq_buffer.exceeded", Type: TypeCounter, Unit: "messages", Source: "processor",
		Meaning: "messages evicted from the DLQ buffer because its byte bound was reached"},
	{Name: "consumer.commit_status", Type: TypeCounter, Unit: "commits", Source: "processor",
		Tags:    []TagDescription{{Key: "status", Values: []string{"ok", "error"}}},
		Meaning: "offset commits"},
	{Name: "consumer.partitions_assigned.count", Type: TypeCounter, Unit: "partitions", Source: "processor",
		Meaning: "partitions assigned"},
	{Name: "consumer.partitions_revoked.count", Type: TypeCounter, Unit: "partitions", Source: "processor",
		Meaning: "partitions revoked"},
	{Name: "consumer.partitions_lost.count", Type: TypeCounter, Unit: "partitions", Source: "processor",
		Meaning: "partitions lost without a commit: reported lost by the consumer (the group session expired, the member was fenced), or revoked when their final commit failed; they are consumed again from the last commit"},
	{Name: "consumer.revoke.timeout", Type: TypeCounter, Unit: "revocations", Source: "processor",
		Meaning: "revocations that did not see their offsets committed within the join timeout"},
	{Name: "consumer.run.create_strategy", Type: TypeCounter, Unit: "strategy chains", Source: "processor",
		Meaning: "strategy chains built"},
	{Name: "consumer.run.close_strategy", Type: TypeCounter, Unit: "strategy chains", Source: "processor",
		Meaning: "strategy chains closed"},
	{Name: "consumer.stuck", Type: TypeCounter, Unit: "reports", Source: "stuckdetector",
		Tags:    []TagDescription{{Key: "phase"}},
		Meaning: "watchdog reports of a loop that has not come round for longer than its timeout (at most once per timeout per stall); `phase` is `poll`, `strategy poll`, `submit`, `commit`, `rebalance`, `join` or whatever the loop set"},

	// Strategies, to the backend given with strategies.WithMetrics.
	{Name: "consumer.latency", Type: TypeTimingObservation, Unit: "seconds", Source: "strategies",
		Meaning: "now minus the message's broker timestamp, at commit (CommitOffsets), at most once per second; above 16 messages a second the clock is read every 16th message, so a sample may come up to 16 messages after the second is over"},
	{Name: "strategies.filter.dropped_messages", Type: TypeCounter, Unit: "messages", Source: "strategies",
		Meaning: "messages Filter dropped"},
	{Name: "strategies.reduce.batch_time", Type: TypeTimingObservation, Unit: "seconds", Source: "strategies",
		Meaning: "time from a batch's first message to its emission (Reduce, Batch)"},
	{Name: "strategies.run_task.join.backpressure", Type: TypeCounter, Unit: "rejections", Source: "strategies",
		Meaning: "downstream rejections RunTask saw while joining"},
	{Name: "strategies.run_task_concurrently.backpressure", Type: TypeCounter, Unit: "rejections", Source: "strategies",
		Meaning: "submits RunTaskConcurrently rejected because `maxPending` were in flight"},
	{Name: "strategies.run_task_concurrently.batch.size", Type: TypeGauge, Unit: "messages", Source: "strategies",
		Meaning: "size of the last batch handed to the pool (batched mode)"},
	{Name: "strategies.run_task_concurrently.batch.backpressure", Type: TypeCounter, Unit: "batches", Source: "strategies",
		Meaning: "times the batched mode kept the remainder of a batch because downstream rejected"},
	{Name: "strategies.healthcheck.touch", Type: TypeCounter, Unit: "touches", Source: "strategies",
		Meaning: "liveness file touches"},
	{Name: "strategies.lookup.missing_keys", Type: TypeCounter, Unit: "lookups", Source: "strategies/lookup",
		Meaning: "lookups that found no row"},
	{Name: "strategies.lookup.dropped_messages", Type: TypeCounter, Unit: "messages", Source: "strategies/lookup",
		Meaning: "messages the lookup step dropped"},
	{Name: "strategies.lookup.recovery_wait", Type: TypeTimingObservation, Unit: "seconds", Source: "strategies/lookup",
		Meaning: "time waited for the lookup table to recover"},

	// The producer, to ProducerConfig.Metrics.
	{Name: "producer.produce_status", Type: TypeCounter, Unit: "deliveries", Source: "kafka",
		Tags:    []TagDescription{{Key: "status", Values: []string{"success", "error"}}, {Key: "topic"}},
		Meaning: "deliveries a Kafka producer (`kafka.Producer`, `franz.Producer`) resolved, by outcome and topic: the output topic's and the DLQ's are counted apart"},

	// The span buffer.
	{Name: "spans.buffer.process_spans", Type: TypeTimingObservation, Unit: "seconds", Source: "segments/store",
		Meaning: "time to write one batch of spans to Redis"},
	{Name: "spans.buffer.process_spans.count", Type: TypeCounter, Unit: "spans", Source: "segments/store",
		Meaning: "spans written"},
	{Name: "spans.buffer.process_spans.subsegments", Type: TypeCounter, Unit: "subsegments", Source: "segments/store",
		Meaning: "subsegments written"},
	{Name: "spans.buffer.process_spans.detached", Type: TypeCounter, Unit: "subsegments", Source: "segments/store",
		Meaning: "subsegments detached into segments of their own (size limit or flush lock)"},
	{Name: "spans.buffer.process_spans.redelivered", Type: TypeCounter, Unit: "spans", Source: "segments/store",
		Meaning: "spans read again after their segment was flushed (within the redelivery window), left out so that no copy forms a fragment"},
	{Name: "spans.buffer.flush_segments", Type: TypeTimingObservation, Unit: "seconds", Source: "segments/store",
		Meaning: "time of one flush cycle"},
	{Name: "spans.buffer.flush_segments.segments", Type: TypeCounter, Unit: "segments", Source: "segments/store",
		Meaning: "segments flushed"},
	{Name: "spans.buffer.flush_segments.spans", Type: TypeCounter, Unit: "spans", Source: "segments/store",
		Meaning: "spans in flushed segments"},
	{Name: "spans.buffer.flush_lock_contention", Type: TypeCounter, Unit: "segments", Source: "segments/store",
		Meaning: "segments skipped because another buffer held their flush lock"},
	{Name: "spans.buffer.dropped_spans", Type: TypeCounter, Unit: "spans", Source: "segments/store",
		Meaning: "spans ingested but not loaded at flush"},
	{Name: "spans.buffer.expired_segments", Type: TypeCounter, Unit: "queue entries", Source: "segments/store",
		Meaning: "queue entries whose data had expired"},
	{Name: "spans.buffer.process_spans.errors", Type: TypeCounter, Unit: "batches", Source: "segments",
		Meaning: "batches whose write to Redis failed and is retried in place"},
	{Name: "spans.buffer.flusher.queue_size", Type: TypeGauge, Unit: "segments", Source: "segments",
		Tags:    []TagDescription{{Key: "shard"}},
		Meaning: "segments waiting in the shard's flush queue"},
	{Name: "spans.buffer.flusher.lag", Type: TypeGauge, Unit: "seconds", Source: "segments",
		Tags:    []TagDescription{{Key: "shard"}},
		Meaning: "how far past its deadline, on the shard's clock, its oldest due segment was when the flush read the queue"},
	{Name: "spans.buffer.flusher.produce", Type: TypeTimingObservation, Unit: "seconds", Source: "segments",
		Meaning: "one cycle's produce and wait for acknowledgements"},
	{Name: "spans.buffer.flusher.produced_segments", Type: TypeCounter, Unit: "segments", Source: "segments",
		Meaning: "segments produced and acknowledged"},
	{Name: "spans.buffer.flusher.segment_spans", Type: TypeCounter, Unit: "spans", Source: "segments",
		Meaning: "spans in produced segments"},
	{Name: "spans.buffer.flusher.segment_bytes", Type: TypeCounter, Unit: "bytes", Source: "segments",
		Meaning: "bytes of produced segments"},
	{Name: "spans.buffer.flusher.produce_errors", Type: TypeCounter, Unit: "segments", Source: "segments",
		Meaning: "produce failures (the segment stays in Redis and is retried)"},
	{Name: "spans.buffer.flusher.errors", Type: TypeCounter, Unit: "failures", Source: "segments",
		Tags:    []TagDescription{{Key: "step", Values: []string{"flush", "done"}}},
		Meaning: "Redis failures of a flush cycle"},
	{Name: "spans.buffer.flusher.unhealthy", Type: TypeCounter, Unit: "workers", Source: "segments",
		Tags:    []TagDescription{{Key: "cause", Values: []string{"stalled", "no_report", "panic", "exited"}}, {Key: "shard"}},
		Meaning: "workers judged unhealthy and replaced"},
	{Name: "spans.buffer.flusher.backpressure", Type: TypeCounter, Unit: "rejections", Source: "segments",
		Tags:    []TagDescription{{Key: "worker"}},
		Meaning: "submits rejected because a worker stayed at its per-cycle limit"},
	{Name: "spans.buffer.flusher.lag_backpressure", Type: TypeCounter, Unit: "rejections", Source: "segments",
		Tags:    []TagDescription{{Key: "worker"}},
		Meaning: "submits rejected because a worker's flush was further behind its deadlines than MaxFlushLag"},
	{Name: "spans.buffer.flusher.hard_backpressure", Type: TypeCounter, Unit: "rejections", Source: "segments",
		Meaning: "submits rejected because Redis memory is above `MaxMemoryRatio`"},
	{Name: "spans.buffer.flusher.memory_ratio", Type: TypeGauge, Unit: "ratio", Source: "segments",
		Meaning: "Redis used/available memory"},
	{Name: "spans.buffer.flusher.drift", Type: TypeGauge, Unit: "seconds", Source: "segments",
		Tags:    []TagDescription{{Key: "shard"}},
		Meaning: "seconds of Kafka time minus wall time at ingest, per partition"},
	{Name: "spans.buffer.flusher.uncommitted_spans", Type: TypeGauge, Unit: "spans", Source: "segments",
		Meaning: "spans whose offsets wait for their segments to be flushed before they are committed"},
	{Name: "spans.buffer.flusher.commit_backpressure", Type: TypeCounter, Unit: "rejections", Source: "segments",
		Meaning: "submits rejected because more than `MaxUncommittedSpans` spans wait for their flush"},
	{Name: "spans.buffer.redis_lost", Type: TypeCounter, Unit: "losses", Source: "segments/store",
		Meaning: "times a flush found the namespace's marker gone or replaced: Redis lost the buffer's data"},
	{Name: "spans.buffer.rewinds", Type: TypeCounter, Unit: "rewinds", Source: "segments",
		Meaning: "times the consumer rejoined its group to read its partitions again from the committed offsets after a Redis loss"},

	// Keyed state.
	{Name: "state.replayed_messages", Type: TypeCounter, Unit: "messages", Source: "state",
		Meaning: "messages at or below their store's applied offset (read again after a crash or a rebalance), passed on without changing the state"},
	{Name: "state.restore_time", Type: TypeTimingObservation, Unit: "seconds", Source: "state",
		Meaning: "time to restore one partition's store from its changelog"},
	{Name: "state.window.late_messages", Type: TypeCounter, Unit: "messages", Source: "state",
		Meaning: "messages later than the grace period of every window they fall in"},

	// The backends' own.
	{Name: "metrics.prometheus.dropped_total", Type: TypeCounter, Unit: "drops", Source: "metrics",
		Tags:    []TagDescription{{Key: "metric"}, {Key: "reason", Values: []string{dropUnexpectedTag, dropNegativeCount, dropNotRegistrable}}},
		Meaning: "tags or values the Prometheus backend could not record (Prometheus only)"},
}

// catalogByName lets the Prometheus backend find a metric's description on its
// first use.
var catalogByName = func() map[string]Description {
	m := make(map[string]Description, len(catalog))
	for _, d := range catalog {
		m[d.Name] = d
	}
	return m
}()

// kind is the kind of call that records a metric of type t.
func (t Type) kind() kind {
	switch t {
	case TypeCounter:
		return kindCounter
	case TypeGauge:
		return kindGauge
	}
	return kindTiming
}
