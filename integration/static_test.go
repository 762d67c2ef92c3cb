package integration

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// staticConsumer returns b's consumer of group with InstanceID id.
func staticConsumer(t *testing.T, b backend, env *kafkatest.Env, group, id string) processor.Consumer[payload] {
	t.Helper()
	switch b.name {
	case "sarama":
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: env.Brokers, GroupID: group, InstanceID: id,
			Sarama: kafkatest.SaramaConfig(), Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatalf("kafka.NewConsumer: %v", err)
		}
		return c
	case "franz":
		c, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: env.Brokers, GroupID: group, InstanceID: id,
			HeartbeatInterval: 200 * time.Millisecond, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatalf("franz.NewConsumer: %v", err)
		}
		return c
	}
	t.Fatalf("no static consumer for backend %q", b.name)
	return nil
}

// TestStaticMembership: a consumer with an InstanceID joins as that static member,
// and closing it does not leave the group, so that a restart with the same id takes
// its partitions back without a rebalance; a dynamic member leaves on Close.
func TestStaticMembership(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic := env.Topic(2)
		env.Fill(topic, 2, 10, plain)
		admin := kadm.NewClient(mustClient(t, env))
		for _, tc := range []struct {
			name, id string
			stays    bool
		}{{"static", "member-a", true}, {"dynamic", "", false}} {
			t.Run(tc.name, func(t *testing.T) {
				group := env.Group()
				c := staticConsumer(t, b, env, group, tc.id)
				got := 0
				if err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{}); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				for got < 20 {
					_, ok, err := c.Poll(ctx, 100*time.Millisecond)
					if err != nil {
						t.Fatalf("Poll: %v", err)
					}
					if ok {
						got++
					}
					if ctx.Err() != nil {
						t.Fatalf("read %d of 20 messages within %v", got, waitFor)
					}
				}
				members := describe(t, ctx, admin, group)
				if len(members) != 1 || instanceID(members[0]) != tc.id {
					t.Fatalf("the group's members are %v; want one with instance id %q", members, tc.id)
				}
				if err := c.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				left := len(describe(t, ctx, admin, group)) == 0
				if left == tc.stays {
					t.Errorf("after Close the member left the group = %v; want %v", left, !tc.stays)
				}
			})
		}
	})
}

func mustClient(t *testing.T, env *kafkatest.Env) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func describe(t *testing.T, ctx context.Context, admin *kadm.Client, group string) []kadm.DescribedGroupMember {
	t.Helper()
	described, err := admin.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatalf("DescribeGroups: %v", err)
	}
	g := described[group]
	if g.Err != nil {
		t.Fatalf("DescribeGroups %s: %v", group, g.Err)
	}
	return g.Members
}

func instanceID(m kadm.DescribedGroupMember) string {
	if m.InstanceID == nil {
		return ""
	}
	return *m.InstanceID
}
