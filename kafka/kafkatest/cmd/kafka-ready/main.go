// Command kafka-ready waits until a Kafka broker answers a metadata request.
// scripts/kafka-start runs it to know when the broker it started is usable.
//
//	kafka-ready -brokers 127.0.0.1:9092 -timeout 90s
//
// It exits 0 once the broker answers and 1 if it does not within the timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated host:port list")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait")
	flag.Parse()
	if err := run(*brokers, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-ready:", err)
		os.Exit(1)
	}
}

func run(brokers string, timeout time.Duration) error {
	if brokers == "" {
		return fmt.Errorf("-brokers is required")
	}
	cl, err := kafkatest.NewClient(strings.Split(brokers, ","))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return cl.Ping(ctx)
}
