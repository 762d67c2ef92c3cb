package franz

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
)

// BenchmarkPollHandout measures Poll alone, without a broker, over polls of one
// partition queued as the reader queues them.
func BenchmarkPollHandout(b *testing.B) { runHandout(b, false) }

// BenchmarkPollRunHandout is BenchmarkPollHandout for PollRun, in runs of up to
// 256 records as the processor takes them.
func BenchmarkPollRunHandout(b *testing.B) { runHandout(b, true) }

// handoutPolls and handoutRecords shape the queue runHandout polls from: polls of
// a partition's records as kgo's reader might queue them.
const (
	handoutPolls   = 4
	handoutRecords = 1024
)

// runHandout polls b.N records from a consumer assigned one partition, queued in
// rounds of handoutPolls polls of handoutRecords records with the timer stopped,
// converted as the reader queues them, so that only Poll (PollRun when runs is
// set) is timed.
func runHandout(b *testing.B, runs bool) {
	p := processor.Partition{Topic: "t", Index: 0}
	c, err := NewConsumer(ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g", Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	c.subscribed = true
	c.poller.Start(processor.RebalanceCallbacks{}, zap.NewNop())
	c.ev.Assign(map[processor.Partition]uint64{p: 1})
	send := func(recs []*kgo.Record) {
		for run := range slices.Chunk(recs, runLen) {
			c.queue <- c.convert(claimed{p: p, epoch: 1, recs: run})
		}
	}
	r := &kgo.Record{Value: make([]byte, 100)}
	into := make([]processor.Message[processor.KafkaPayload], 0, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		b.StopTimer()
		for range handoutPolls {
			recs := make([]*kgo.Record, handoutRecords)
			for i := range recs {
				recs[i] = r
			}
			send(recs)
		}
		b.StartTimer()
		if runs {
			for got := 0; got < handoutPolls*handoutRecords; {
				run, err := c.PollRun(context.Background(), time.Second, into[:0])
				if err != nil || len(run) == 0 {
					b.Fatal(len(run), err)
				}
				got += len(run)
			}
			n += handoutPolls * handoutRecords
			continue
		}
		for range handoutPolls * handoutRecords {
			_, ok, err := c.Poll(context.Background(), time.Second)
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		n += handoutPolls * handoutRecords
	}
}
