package state_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/state/statetest"
)

func TestTableReadsTheOwnedPartitionsAcknowledgedValues(t *testing.T) {
	cl := statetest.NewChangelog()
	// "a" is on partition 0, the step's; "b" on partition 1, another member's.
	table := state.NewTable[int64](func(key string) int32 {
		if key == "a" {
			return 0
		}
		return 1
	})
	s := countStep(t, state.Config[int64]{Changelog: cl, Table: table}, &recorder{})
	ctx := context.Background()
	if _, _, err := table.Get(ctx, "a"); !errors.Is(err, state.ErrNotOwned) {
		t.Fatalf("get before the partition's store exists: %v, want ErrNotOwned", err)
	}
	msgCtx, revoke := context.WithCancel(ctx)
	submit(t, s, msg(msgCtx, "a", 0))
	cl.Hold(true)
	submit(t, s, msg(msgCtx, "a", 1))
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if v, found, err := table.Get(ctx, "a"); err != nil || !found || v != 1 {
		t.Fatalf("get a = %d, %v, %v; want 1: the second change is not acknowledged yet", v, found, err)
	}
	cl.Release()
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if v, found, err := table.Get(ctx, "a"); err != nil || !found || v != 2 {
		t.Fatalf("get a = %d, %v, %v; want 2", v, found, err)
	}
	if _, _, err := table.Get(ctx, "b"); !errors.Is(err, state.ErrNotOwned) {
		t.Fatalf("get of another member's key: %v, want ErrNotOwned", err)
	}
	revoke()
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := table.Get(ctx, "a"); !errors.Is(err, state.ErrNotOwned) {
		t.Fatalf("get after the revocation: %v, want ErrNotOwned", err)
	}
	join(t, s)
}

func TestKafkaPartitionerAgreesWithTheProducer(t *testing.T) {
	const partitions = 7
	env := kafkatest.New(t)
	topic := env.Topic(partitions)
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	part := state.KafkaPartitioner(partitions)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i := range 50 {
		key := fmt.Sprintf("user-%d", i)
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key)}).First()
		if err != nil {
			t.Fatal(err)
		}
		if got := part(key); got != r.Partition {
			t.Fatalf("key %s: KafkaPartitioner says %d, the producer wrote to %d", key, got, r.Partition)
		}
	}
}
