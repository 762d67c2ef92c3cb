package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produce writes n messages of size bytes to topic, round robin over its
// partitions so that every partition holds the same share, and returns how long
// it took. It uses franz-go rather than sarama so that producing is quick and
// shares no code with the consumers under test.
func produce(ctx context.Context, brokers []string, topic string, partitions, n, size int, compression string) (time.Duration, error) {
	codec, ok := compressionCodec(compression)
	if !ok {
		return 0, fmt.Errorf("compression %q is unknown; use one of %v", compression, compressionNames())
	}
	cl, err := kgo.NewClient(
		kgo.ProducerBatchCompression(codec),
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(100_000),
	)
	if err != nil {
		return 0, fmt.Errorf("new producer: %w", err)
	}
	defer cl.Close()

	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	start := time.Now()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	wg.Add(n)
	for i := range n {
		r := &kgo.Record{Value: value, Partition: int32(i % partitions)}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	// Every promise runs once the record is acknowledged, failed or ctx ends,
	// so this wait is bounded by ctx and the client's own timeouts.
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return time.Since(start), nil
}

// compressions are the batch codecs the producer can write the topic with.
var compressions = []struct {
	name  string
	codec func() kgo.CompressionCodec
}{
	{"snappy", kgo.SnappyCompression},
	{"none", kgo.NoCompression},
	{"lz4", kgo.Lz4Compression},
	{"zstd", kgo.ZstdCompression},
	{"gzip", kgo.GzipCompression},
}

func compressionNames() []string {
	names := make([]string, len(compressions))
	for i, c := range compressions {
		names[i] = c.name
	}
	return names
}

func compressionCodec(name string) (kgo.CompressionCodec, bool) {
	for _, c := range compressions {
		if c.name == name {
			return c.codec(), true
		}
	}
	return kgo.CompressionCodec{}, false
}

// guessBroker names the broker from the API versions it supports, such as
// "v4.0"; franz-go's guess is as precise as the protocol allows.
func guessBroker(ctx context.Context, brokers []string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "unknown broker"
	}
	defer cl.Close()
	versions, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		return "unknown broker"
	}
	for _, v := range versions.Sorted() {
		if v.Err == nil {
			return "Kafka " + v.VersionGuess() + " (guessed from API versions)"
		}
	}
	return "unknown broker"
}

// uniqueName returns prefix with a random suffix, so that runs sharing a broker
// never reuse a topic or a group.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails.
	return prefix + "-" + hex.EncodeToString(b[:])
}
