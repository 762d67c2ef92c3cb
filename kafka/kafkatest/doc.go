// Package kafkatest gives tests and demo programs a Kafka broker to talk to.
//
// Start runs franz-go's kfake, an in-process broker that speaks the real Kafka
// protocol, on 127.0.0.1. Client creates topics, produces and reads records and
// reports committed and end offsets against any broker, in-process or real; it is
// built on franz-go (kgo, kadm) so that it never shares code with the sarama side
// it is used to check.
//
// Tests call Brokers or New: they use the broker named by CREEK_KAFKA_BROKERS
// (comma-separated host:port list) when it is set and an in-process one
// otherwise, so the same test runs on both. With CREEK_REQUIRE_REAL=1 a missing
// CREEK_KAFKA_BROKERS fails the test instead of falling back, which is how CI
// makes sure its integration step really ran against Kafka.
package kafkatest
