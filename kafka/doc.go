// Package kafka connects creek to Apache Kafka through sarama.
//
// Consumer turns sarama's consumer group, which reads every claimed partition on
// its own goroutine, into the poll-style processor.Consumer that the
// StreamProcessor loop drives: one message at a time from Poll, assignment
// changes as callbacks on the loop's goroutine, offsets committed only when the
// loop says so, per-partition pause and resume, and Fetch to read one message
// again by offset. Under the cooperative-sticky assignor a rebalance revokes only
// the partitions that move and the others keep flowing.
//
// A group session that ends without a rebalance loses its partitions: they may
// belong to another member already, so the consumer calls
// RebalanceCallbacks.OnLost for them instead of OnRevoke (OnRevoke if OnLost is
// nil), and never commits for them itself. sarama says why a session ended in
// the cause of its context: the coordinator answering a heartbeat with
// UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION (the session timed out, or the member
// was replaced), FENCED_INSTANCE_ID (another process took the static member's
// place), coordinator or connection errors the heartbeat
// gave up on after Metadata.Retry.Max retries, or a claim not released within
// the rebalance timeout. A rebalance, Close and the other ends of a session
// revoke. The consumer then rejoins, and the partitions it is given again are
// read from their committed offsets.
//
// Topic names are checked against Kafka's rules (ValidateTopic) when the consumer
// subscribes; a topic that does not exist yet is waited for, with a rate-limited
// log, and never created by the consumer, whose metadata requests have
// auto-creation off. The producer keeps sarama's setting, on unless configured.
//
// Producer writes through sarama's AsyncProducer and resolves a
// processor.Delivery per message; DLQProducer builds on it to send invalid
// messages to a dead-letter topic with headers naming where they came from.
//
// Package kafkatest provides a broker for tests: in-process, or a real one named
// by the environment.
package kafka
