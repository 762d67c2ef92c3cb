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
