package franz_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// sentinel is the value readCommitted stops at.
const sentinel = "sentinel"

func TestTxnConfigErrors(t *testing.T) {
	cfg := franz.ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g"}
	cases := []struct {
		name string
		txn  franz.TxnConfig
		want string
	}{
		{"no transactional id", franz.TxnConfig{}, "TransactionalID is empty"},
		{"negative timeout", franz.TxnConfig{TransactionalID: "x", TransactionTimeout: -time.Second}, "TransactionTimeout is -1s"},
		{"negative end timeout", franz.TxnConfig{TransactionalID: "x", EndTimeout: -time.Second}, "EndTimeout is -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := franz.NewTxnConsumer(cfg, tc.txn)
			if err == nil || !strings.HasPrefix(err.Error(), "franz: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTxnConsumer = %v; want an error starting %q that says %q", err, "franz: ", tc.want)
			}
		})
	}
	if _, err := franz.NewTxnConsumer(franz.ConsumerConfig{GroupID: "g"}, franz.TxnConfig{TransactionalID: "x"}); err == nil || !strings.Contains(err.Error(), "Brokers is empty") {
		t.Fatalf("NewTxnConsumer without brokers = %v; want the consumer configuration's error", err)
	}
}

// newTxnConsumer returns a TxnConsumer of group with short heartbeats.
func newTxnConsumer(t *testing.T, brokers []string, group, txnID string) *franz.TxnConsumer {
	t.Helper()
	c, err := franz.NewTxnConsumer(franz.ConsumerConfig{
		Brokers:           brokers,
		GroupID:           group,
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            zaptest.NewLogger(t),
		ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
	}, franz.TxnConfig{TransactionalID: txnID, TransactionTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// upper is the pipeline's transformation: the input value upper-cased.
func upper(_ context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
	return processor.KafkaPayload{Value: bytes.ToUpper(p.Value)}, nil
}

// startTransact runs a processor reading in into out through Transact, with a
// transaction every 7 messages or 100 ms. fn, if not nil, runs before upper.
func startTransact(t *testing.T, c *franz.TxnConsumer, in, out string, fn func(processor.KafkaPayload) error) *running {
	t.Helper()
	mapped := pipeline.Map(pipeline.FromKafka(), func(ctx context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		if fn != nil {
			if err := fn(p); err != nil {
				return p, err
			}
		}
		return upper(ctx, p)
	})
	p, err := processor.New(c, pipeline.Transact(mapped, c, out), processor.Config[processor.KafkaPayload]{
		Topics:       []string{in},
		Logger:       zaptest.NewLogger(t),
		CommitPolicy: processor.CommitPolicy{MinMessages: 7, MinInterval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	return r
}

// running is a processor started by startTransact.
type running struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

// stop asks the processor to stop and returns Run's result.
func (r *running) stop() error {
	r.cancel()
	return r.wait()
}

// wait returns Run's result, failing the test if Run does not return in time.
func (r *running) wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.cancel()
		return err
	case <-time.After(waitFor):
		r.cancel()
		r.t.Fatalf("the processor did not stop within %s", waitFor)
		return nil
	}
}

// readCommitted writes a sentinel to each partition of topic and reads topic with
// read_committed isolation up to the sentinels, returning the values before them.
// Every transaction that ended before the sentinels were written is settled by
// then; one left open makes it fail when ctx ends.
func readCommitted(ctx context.Context, brokers []string, topic string, partitions int32) ([]string, error) {
	return readUpToSentinel(ctx, brokers, topic, partitions, kgo.ReadCommitted())
}

func readUpToSentinel(ctx context.Context, brokers []string, topic string, partitions int32, iso kgo.IsolationLevel) ([]string, error) {
	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for p := range partitions {
		if err := w.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(sentinel)}).FirstErr(); err != nil {
			return nil, fmt.Errorf("write sentinel: %w", err)
		}
	}
	r, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []string
	seen := 0
	for seen < int(partitions) {
		fs := r.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("read %s: %d of %d sentinels after %d records: %w", topic, seen, partitions, len(out), ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return out, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if string(rec.Value) == sentinel {
				seen++
			} else {
				out = append(out, string(rec.Value))
			}
		})
	}
	return out, nil
}

// waitCommitted waits until group's committed offsets of topic are want on every
// one of partitions.
func waitCommitted(t *testing.T, env *kafkatest.Env, group, topic string, partitions int32, want int64) {
	t.Helper()
	ctx := env.Context(waitFor)
	for {
		got, err := env.Client.CommittedOffsets(ctx, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for p := range partitions {
			done = done && got[p] == want
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("committed offsets of %s = %v; want %d on each of %d partitions within %s", topic, got, want, partitions, waitFor)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exactlyOnce checks that got holds the upper-cased value of every one of n
// inputs per partition exactly once.
func exactlyOnce(t *testing.T, got []string, partitions int32, n int) {
	t.Helper()
	count := make(map[string]int)
	for _, v := range got {
		count[v]++
	}
	var lost, dup int
	for p := range partitions {
		for i := range n {
			switch c := count[strings.ToUpper(plain(p, i))]; {
			case c == 0:
				lost++
			case c > 1:
				dup += c - 1
			}
		}
	}
	if lost > 0 || dup > 0 || len(got) != int(partitions)*n {
		t.Fatalf("read_committed output: %d records for %d inputs, %d lost, %d duplicates; want each once", len(got), int(partitions)*n, lost, dup)
	}
}

func TestTransactCommitsOutputsWithTheirOffsets(t *testing.T) {
	env := kafkatest.New(t)
	const parts, n = 3, 20
	in, out, group := env.Topic(parts), env.Topic(1), env.Group()
	env.Fill(in, parts, n, plain)

	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	run := startTransact(t, c, in, out, nil)
	waitCommitted(t, env, group, in, parts, n)
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := readCommitted(env.Context(waitFor), env.Brokers, out, 1)
	if err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, got, parts, n)
}

// TestAnAbortedTransactionLeavesNothingVisible fences the member's transactional
// offset commit, as the group does to a zombie: the transaction aborts, the
// processor stops with ErrTxnAborted, a read_committed reader sees none of the
// outputs that reached the log, and the group has no committed offset.
func TestAnAbortedTransactionLeavesNothingVisible(t *testing.T) {
	cluster, err := kafkatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	env := kafkatest.NewOn(t, cluster)
	const parts, n = 2, 10
	in, out, group := env.Topic(parts), env.Topic(1), env.Group()
	env.Fill(in, parts, n, plain)

	var fenced atomic.Int32
	cluster.ControlKey(kmsg.TxnOffsetCommit.Int16(), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		req := kr.(*kmsg.TxnOffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.IllegalGeneration.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		fenced.Add(1)
		return resp, nil, true
	})

	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	err = startTransact(t, c, in, out, nil).wait()
	if err == nil {
		t.Fatal("Run returned nil; want the aborted transaction's error")
	}
	if !errors.Is(err, franz.ErrTxnAborted) || !errors.Is(err, kerr.IllegalGeneration) {
		t.Fatalf("Run = %v; want an error wrapping franz.ErrTxnAborted and ILLEGAL_GENERATION", err)
	}
	if fenced.Load() == 0 {
		t.Fatal("no transactional offset commit reached the broker")
	}
	ctx := env.Context(waitFor)
	uncommitted, err := readUpToSentinel(ctx, env.Brokers, out, 1, kgo.ReadUncommitted())
	if err != nil {
		t.Fatal(err)
	}
	if len(uncommitted) == 0 {
		t.Fatal("no output of the aborted transaction reached the log; the check below would prove nothing")
	}
	got, err := readCommitted(ctx, env.Brokers, out, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("a read_committed reader sees %d records of the aborted transaction (%q); want none", len(got), got)
	}
	committed, err := env.Client.CommittedOffsets(ctx, group, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != 0 {
		t.Fatalf("group %s committed %v after the abort; want nothing", group, committed)
	}
}
