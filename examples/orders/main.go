package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// options are the command line's.
type options struct {
	brokers, listen string
	orders, invalid int
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka bootstrap brokers, comma-separated; empty runs a demo on an in-process broker with sample orders")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "serve /metrics and /healthz on this host:port")
	flag.IntVar(&o.orders, "orders", 1000, "demo: valid orders to produce")
	flag.IntVar(&o.invalid, "invalid", 5, "demo: unparseable orders mixed in")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves on the brokers given until SIGINT or SIGTERM, or runs the demo.
func run(o options, out io.Writer) error {
	ctx, stop := processor.SignalContext(context.Background())
	defer stop()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if o.brokers != "" {
		logger, err := zap.NewProduction()
		if err != nil {
			return err
		}
		return serve(ctx, strings.Split(o.brokers, ","), ln, logger)
	}
	return demo(ctx, o, ln, out)
}

// demo starts an in-process broker, writes sample orders, runs the service until
// every order is out, checks its endpoints, stops it with SIGTERM as an
// orchestrator would, and prints what came out.
func demo(ctx context.Context, o options, ln net.Listener, out io.Writer) error {
	cluster, err := kafkatest.Start(kafkatest.WithPartitions(4), kafkatest.WithTopics("orders", "orders-enriched", "orders-dlq"))
	if err != nil {
		return err
	}
	defer cluster.Close()
	client, err := kafkatest.NewClient(cluster.Addrs())
	if err != nil {
		return err
	}
	defer client.Close()
	// Not below ctx: the demo waits on past the SIGTERM that cancels it.
	wait, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var recs []*kgo.Record
	for i := range o.orders {
		v, _ := json.Marshal(Order{ID: strconv.Itoa(i), Customer: "c" + strconv.Itoa(i%7), Amount: float64(i%50) + 0.5})
		recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(strconv.Itoa(i % 7)), Value: v})
	}
	for i := range o.invalid {
		recs = append(recs, &kgo.Record{Topic: "orders", Value: []byte("{not json " + strconv.Itoa(i))})
	}
	if err := client.Produce(wait, recs...); err != nil {
		return err
	}
	fmt.Fprintf(out, "produced %d orders and %d unparseable ones to \"orders\" (4 partitions)\n", o.orders, o.invalid)

	done := make(chan error, 1)
	go func() { done <- serve(ctx, cluster.Addrs(), ln, zap.NewNop()) }()

	batches, orders, largest, err := readBatches(wait, client, o.orders)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "out: %d orders, %d distinct, enriched, in %d batches of at most %d\n", orders.total, orders.distinct, batches, largest)
	dead, err := client.Read(wait, "orders-dlq", o.invalid)
	if err != nil {
		return fmt.Errorf("reading the dead-letter topic: %w", err)
	}
	fmt.Fprintf(out, "dead-letter topic: %d messages, first %q from %s\n", len(dead), dead[0].Value, origin(dead[0]))
	for _, path := range []string{"/metrics", "/healthz"} {
		code, body, err := get("http://" + ln.Addr().String() + path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "GET %s: %d (%d bytes)\n", path, code, len(body))
	}

	// What an orchestrator does to stop a pod; the service commits what it wrote.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the service: %w", err)
		}
	case <-wait.Done():
		return errors.New("the service did not stop before the demo's 60 s ran out")
	}
	committed, err := client.CommittedOffsets(wait, "orders", "orders")
	if err != nil {
		return err
	}
	ends, err := client.EndOffsets(wait, "orders")
	if err != nil {
		return err
	}
	var sumCommitted, sumEnds int64
	for p, end := range ends {
		sumCommitted, sumEnds = sumCommitted+committed[p], sumEnds+end
	}
	fmt.Fprintf(out, "after SIGTERM: committed %d of %d input offsets\n", sumCommitted, sumEnds)
	switch {
	case orders.distinct != o.orders || orders.total != o.orders:
		return fmt.Errorf("check failed: %d orders out (%d distinct), want each of %d once", orders.total, orders.distinct, o.orders)
	case len(dead) != o.invalid:
		return fmt.Errorf("check failed: %d dead letters, want %d", len(dead), o.invalid)
	case sumCommitted != sumEnds:
		return fmt.Errorf("check failed: committed %d of %d offsets after SIGTERM", sumCommitted, sumEnds)
	}
	fmt.Fprintln(out, "check: OK")
	return nil
}

type counts struct{ total, distinct int }

// readBatches reads output batches until want orders are out.
func readBatches(ctx context.Context, c *kafkatest.Client, want int) (batches int, n counts, largest int, err error) {
	seen := map[string]bool{}
	for batches = (want + 99) / 100; ; batches++ {
		recs, err := c.Read(ctx, "orders-enriched", batches)
		if err != nil {
			return 0, n, 0, fmt.Errorf("reading the output: %w (%d orders out)", err, n.total)
		}
		clear(seen)
		n, largest = counts{}, 0
		for _, r := range recs {
			var batch []Order
			if err := json.Unmarshal(r.Value, &batch); err != nil {
				return 0, n, 0, fmt.Errorf("output batch %q: %w", r.Value, err)
			}
			for _, o := range batch {
				if o.Region != "eu-"+o.Customer {
					return 0, n, 0, fmt.Errorf("order %s came out without its region: %+v", o.ID, o)
				}
				seen[o.ID] = true
			}
			n.total += len(batch)
			largest = max(largest, len(batch))
		}
		n.distinct = len(seen)
		if n.total >= want {
			return batches, n, largest, nil
		}
	}
}

func origin(r *kgo.Record) string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return fmt.Sprintf("%s/%s@%s (reason %q)", h[kafka.HeaderOriginalTopic], h[kafka.HeaderOriginalPartition], h[kafka.HeaderOriginalOffset], h[kafka.HeaderReason])
}

func get(url string) (int, []byte, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
