// Package integration holds tests only: they drive processor.StreamProcessor with
// the real sarama adapter of package kafka and the strategies of package strategies,
// on an in-process broker, or on the real broker named by CREEK_KAFKA_BROKERS.
//
//	go test -race ./integration/
//	CREEK_KAFKA_BROKERS=127.0.0.1:9092 go test -race -count=1 ./integration/
package integration
