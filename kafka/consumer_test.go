package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

func TestConsumerConfigValidation(t *testing.T) {
	old := sarama.NewConfig()
	old.Version = sarama.V0_10_2_0
	preStatic := sarama.NewConfig()
	preStatic.Version = sarama.V2_2_0_0
	otherID := sarama.NewConfig()
	otherID.Version = sarama.V2_8_0_0
	otherID.Consumer.Group.InstanceId = "b"
	tests := []struct {
		name string
		cfg  ConsumerConfig
		want string
	}{
		{"no brokers", ConsumerConfig{GroupID: "g"}, "Brokers is empty"},
		{"no group", ConsumerConfig{Brokers: []string{"x:1"}}, "GroupID is empty"},
		{"unknown assignor", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", Assignor: "fair"}, `Assignor "fair" is unknown`},
		{"old version", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", Sarama: old}, "at least 0.11"},
		{"buffer too big", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", ChannelBufferSize: MaxChannelBufferSize + 1}, "ChannelBufferSize"},
		{"revoke timeout too long", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", RevokeTimeout: time.Hour}, "shorter than Sarama.Consumer.Group.Rebalance.Timeout"},
		{"bad initial offset", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", InitialOffset: 7}, "InitialOffset"},
		{"instance id before 2.3", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", InstanceID: "a", Sarama: preStatic}, "InstanceID needs Sarama.Version 2.3"},
		{"two instance ids", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", InstanceID: "a", Sarama: otherID}, `Sarama.Consumer.Group.InstanceId is "b"`},
		{"negative missing-topic log interval", ConsumerConfig{Brokers: []string{"x:1"}, GroupID: "g", MissingTopicLogInterval: -time.Second}, "MissingTopicLogInterval is -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewConsumer(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewConsumer error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestConsumerReadsEveryMessageInOrder(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(4)
	const perPartition = 50
	produce(t, env, topic, indexes(4), perPartition)

	c := newTestConsumer(t, env, env.Group(), "")
	defer c.Close()
	var assigned []processor.Partition
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{
		OnAssign: func(added []processor.Partition) { assigned = append(assigned, added...) },
	}); err != nil {
		t.Fatal(err)
	}
	msgs := pollN(t, c, 4*perPartition, "every message")

	if want := partitionsOf(topic, 0, 1, 2, 3); !slices.Equal(assigned, want) {
		t.Errorf("OnAssign got %v, want %v", assigned, want)
	}
	if got := c.Assignment(); len(got) != 4 {
		t.Errorf("Assignment() = %v, want 4 partitions", got)
	}
	for p, offs := range offsetsByPartition(t, msgs) {
		for i, off := range offs {
			if off != int64(i) {
				t.Fatalf("partition %s: message %d has offset %d; want offsets 0..%d in order, got %v", p, i, off, perPartition-1, offs)
			}
		}
		if len(offs) != perPartition {
			t.Errorf("partition %s: got %d messages, want %d", p, len(offs), perPartition)
		}
	}
	for _, msg := range msgs {
		checkValue(t, msg)
		if msg.Timestamp.IsZero() {
			t.Fatalf("message %s has no timestamp", msg.Committable)
		}
	}
}

func TestConsumerCommitThenNewMemberResumes(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(2)
	group := env.Group()
	produce(t, env, topic, indexes(2), 10)

	c := newTestConsumer(t, env, group, "")
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	msgs := pollN(t, c, 20, "all 20 messages")
	// Commit part of each partition: 4 processed on 0, 7 on 1.
	commit := map[processor.Partition]int64{{Topic: topic, Index: 0}: 4, {Topic: topic, Index: 1}: 7}
	if err := c.Commit(env.Context(waitFor), commit); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	committed, err := env.Client.CommittedOffsets(env.Context(waitFor), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != 4 || committed[1] != 7 {
		t.Fatalf("broker has committed %v, want map[0:4 1:7]", committed)
	}
	if len(msgs) != 20 {
		t.Fatalf("read %d messages, want 20", len(msgs))
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Commit(context.Background(), commit); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}

	c2 := newTestConsumer(t, env, group, "")
	defer c2.Close()
	if err := c2.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	rest := offsetsByPartition(t, pollN(t, c2, (10-4)+(10-7), "messages after the committed offsets"))
	want := map[int32][]int64{0: {4, 5, 6, 7, 8, 9}, 1: {7, 8, 9}}
	for idx, offs := range want {
		if got := rest[processor.Partition{Topic: topic, Index: idx}]; !slices.Equal(got, offs) {
			t.Errorf("partition %d after restart: read offsets %v, want %v", idx, got, offs)
		}
	}
}

func TestConsumerPauseAndResume(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(1)
	produce(t, env, topic, []int32{0}, 5)

	c := newTestConsumer(t, env, env.Group(), "")
	defer c.Close()
	if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatal(err)
	}
	p := partitionsOf(topic, 0)
	first := pollN(t, c, 1, "the first message")
	c.Pause(p)
	if got := c.Paused(); !slices.Equal(got, p) {
		t.Fatalf("Paused() = %v, want %v", got, p)
	}
	produce(t, env, topic, []int32{0}, 5)
	// Paused, nothing may come out, even what was already fetched.
	for range 5 {
		if msg, ok, err := c.Poll(context.Background(), 100*time.Millisecond); err != nil || ok {
			t.Fatalf("Poll while paused = (%s, %v, %v), want nothing", msg.Committable, ok, err)
		}
	}
	c.Resume(p)
	if got := c.Paused(); len(got) != 0 {
		t.Fatalf("Paused() after Resume = %v, want none", got)
	}
	rest := pollN(t, c, 9, "the messages after resume")
	offs := offsetsByPartition(t, append(first, rest...))[p[0]]
	if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(offs, want) {
		t.Errorf("offsets across pause = %v, want %v", offs, want)
	}
}

func TestConsumerEagerRebalanceRevokesEverything(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(4)
	group := env.Group()

	a := startMember(t, newTestConsumer(t, env, group, AssignorRange), topic, nil)
	if ev, want := a.nextEvent(t, "first member's assignment"), fmt.Sprint("assign ", partitionsOf(topic, 0, 1, 2, 3)); ev != want {
		t.Fatalf("first member: %q, want %q", ev, want)
	}
	b := startMember(t, newTestConsumer(t, env, group, AssignorRange), topic, nil)

	if ev, want := a.nextEvent(t, "first member's revocation"), fmt.Sprint("revoke ", partitionsOf(topic, 0, 1, 2, 3)); ev != want {
		t.Fatalf("first member after second joined: %q, want %q (eager revokes everything)", ev, want)
	}
	evA := a.nextEvent(t, "first member's new assignment")
	evB := b.nextEvent(t, "second member's assignment")
	if !strings.HasPrefix(evA, "assign ") || !strings.HasPrefix(evB, "assign ") {
		t.Fatalf("after rebalance: first member %q, second %q; want both assigned", evA, evB)
	}
	if n := strings.Count(evA, "/") + strings.Count(evB, "/"); n != 4 {
		t.Errorf("after rebalance members hold %q and %q; want the 4 partitions split between them", evA, evB)
	}
}

func TestConsumerCooperativeRebalanceKeepsRetainedPartitions(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(4)
	group := env.Group()

	a := startMember(t, newTestConsumer(t, env, group, AssignorCooperativeSticky), topic, nil)
	if ev, want := a.nextEvent(t, "first member's assignment"), fmt.Sprint("assign ", partitionsOf(topic, 0, 1, 2, 3)); ev != want {
		t.Fatalf("first member: %q, want %q", ev, want)
	}
	b := startMember(t, newTestConsumer(t, env, group, AssignorCooperativeSticky), topic, nil)

	// The moving partitions' readers stop one by one, so their revocation may
	// reach OnRevoke in more than one call; together they must be exactly what
	// the second member gets.
	var revoked []string
	for n := 0; n < 2; {
		ev := a.nextEvent(t, "first member's revocation")
		if !strings.HasPrefix(ev, "revoke ") {
			t.Fatalf("first member got %q before its revocation completed", ev)
		}
		revoked = append(revoked, strings.Fields(strings.Trim(strings.TrimPrefix(ev, "revoke "), "[]"))...)
		n = len(revoked)
	}
	slices.Sort(revoked)
	assigned := b.nextEvent(t, "second member's assignment")
	if got, want := fmt.Sprint(revoked), strings.TrimPrefix(assigned, "assign "); got != want {
		t.Fatalf("first member had %s revoked but second member got %q; want the 2 revoked partitions to be the ones assigned", got, assigned)
	}
	select {
	case ev := <-a.events:
		t.Fatalf("first member got %q after the partial revocation; retained partitions must not be revoked or re-assigned", ev)
	default:
	}

	// The retained partitions keep delivering, to the same member.
	produce(t, env, topic, indexes(4), 3)
	gotA := offsetsByPartition(t, a.take(t, 6, "messages of the retained partitions"))
	gotB := offsetsByPartition(t, b.take(t, 6, "messages of the moved partitions"))
	for p := range gotA {
		if _, ok := gotB[p]; ok || slices.Contains(revoked, p.String()) {
			t.Errorf("partition %s delivered to the first member after it was revoked", p)
		}
	}
	if len(gotA) != 2 || len(gotB) != 2 {
		t.Errorf("first member read %v, second %v; want 2 partitions each", gotA, gotB)
	}
	ev := ""
	select {
	case ev = <-a.events:
	default:
	}
	if ev != "" {
		t.Errorf("first member got %q while its retained partitions kept flowing", ev)
	}
}

func TestConsumerRevocationWaitsForOnRevoke(t *testing.T) {
	for _, assignor := range []string{AssignorRange, AssignorCooperativeSticky} {
		t.Run(assignor, func(t *testing.T) {
			env := kafkatest.New(t)
			topic := env.Topic(2)
			group := env.Group()
			produce(t, env, topic, indexes(2), 10)

			// The first member reads everything but commits only inside OnRevoke,
			// as the processor does when it joins its strategy.
			var done syncSet
			onRevoke := func(c *Consumer, revoked []processor.Partition) {
				commit := make(map[processor.Partition]int64)
				for _, p := range revoked {
					if next, ok := done.get(p); ok {
						commit[p] = next
					}
				}
				if err := c.Commit(context.Background(), commit); err != nil {
					t.Errorf("Commit in OnRevoke: %v", err)
				}
			}
			a := startMember(t, newTestConsumer(t, env, group, assignor), topic, onRevoke)
			for _, msg := range a.take(t, 20, "the first member's messages") {
				pos := origin(t, msg)
				done.set(pos.Partition, pos.Offset+1)
			}

			b := startMember(t, newTestConsumer(t, env, group, assignor), topic, nil)
			b.nextEvent(t, "second member's assignment")
			produce(t, env, topic, indexes(2), 1)
			// Whatever the second member got, it must start where the first
			// member's OnRevoke committed: at offset 10, never earlier.
			msg := b.take(t, 1, "the second member's first message")[0]
			if pos := origin(t, msg); pos.Offset != 10 {
				t.Fatalf("second member's first message is at %s offset %d; want 10, where the first member committed in OnRevoke", pos.Partition, pos.Offset)
			}
		})
	}
}

func TestConsumerFetch(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(2)
	produce(t, env, topic, []int32{1}, 5)

	c := newTestConsumer(t, env, env.Group(), "")
	defer c.Close()
	pos := processor.Position{Partition: processor.Partition{Topic: topic, Index: 1}, Offset: 3}
	msg, err := c.Fetch(env.Context(waitFor), pos)
	if err != nil {
		t.Fatalf("Fetch(%v): %v", pos, err)
	}
	if got, _ := msg.Origin(); got != pos {
		t.Errorf("Fetch(%v) returned the message at %v", pos, got)
	}
	checkValue(t, msg)

	// Nothing is at the end offset yet: Fetch waits, and gives up with ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	pos.Offset = 5
	if _, err := c.Fetch(ctx, pos); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch past the end = %v, want context.DeadlineExceeded", err)
	}
}

func TestConsumerBatchesKeepOrderAndBound(t *testing.T) {
	for _, size := range []int{1, 4, 0} {
		t.Run(fmt.Sprintf("ChannelBufferSize=%d", size), func(t *testing.T) {
			env := kafkatest.New(t)
			topic := env.Topic(2)
			produce(t, env, topic, []int32{0, 1}, 300)
			c, err := NewConsumer(ConsumerConfig{Brokers: env.Brokers, GroupID: env.Group(), Sarama: kafkatest.SaramaConfig(), ChannelBufferSize: size})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
				t.Fatal(err)
			}
			var msgs []processor.Message[processor.KafkaPayload]
			prev := 0
			for len(msgs) < 600 {
				got := pollN(t, c, 1, fmt.Sprintf("message %d of 600", len(msgs)+1))
				msgs = append(msgs, got...)
				// A message Buffered promised comes from the batch at hand, one per
				// Poll, and a batch never exceeds the queue's bound.
				b := c.Buffered()
				if prev > 0 && b != prev-1 {
					t.Fatalf("Buffered() = %d after a Poll with %d buffered, want %d", b, prev, prev-1)
				}
				if b >= c.batchSize {
					t.Fatalf("Buffered() = %d, want less than the batch bound %d", b, c.batchSize)
				}
				prev = b
			}
			for p, offs := range offsetsByPartition(t, msgs) {
				if len(offs) != 300 || !slices.IsSorted(offs) || offs[0] != 0 || offs[299] != 299 {
					t.Errorf("%s: offsets %v..., want 0 to 299 in order", p, offs[:min(len(offs), 5)])
				}
			}
		})
	}
}

func TestConsumerSessionLost(t *testing.T) {
	for _, fault := range []kafkatest.SessionFault{
		kafkatest.HeartbeatError(kerr.IllegalGeneration, 1),
		kafkatest.HeartbeatError(kerr.UnknownMemberID, 1),
		// sarama ends the session when the coordinator stays unavailable for
		// Metadata.Retry.Max+1 heartbeats.
		kafkatest.HeartbeatError(kerr.CoordinatorNotAvailable, kafkatest.SaramaConfig().Metadata.Retry.Max+1),
	} {
		t.Run(fault.Name, func(t *testing.T) {
			cl, err := kafkatest.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			env := kafkatest.NewOn(t, cl)
			topic := env.Topic(2)
			produce(t, env, topic, indexes(2), 5)
			c := newTestConsumer(t, env, env.Group(), "")
			c.retryBackoff = 50 * time.Millisecond
			kafkatest.CheckSessionLost(t, cl, c, topic, 2, 5, fault)
		})
	}
}
