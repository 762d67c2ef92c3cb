package integration

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// TestSecondMemberJoinsAndLeaves runs member A, lets member B join while A works
// through a backlog, then stops B while both work through another. Nothing may be
// lost; duplicates (redelivery after a rebalance) are counted and bounded. Under
// cooperative-sticky A's chain must survive both rebalances.
func TestSecondMemberJoinsAndLeaves(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		for _, assignor := range []string{kafka.AssignorRange, kafka.AssignorSticky, kafka.AssignorCooperativeSticky} {
			t.Run(assignor, func(t *testing.T) {
				env := kafkatest.New(t)
				topic, group := env.Topic(4), env.Group()
				n := &notifier{}
				s := newSeen(n)
				// A little work per message keeps both members busy while the group
				// changes.
				work := func(_ context.Context, m processor.Message[payload]) (payload, error) {
					if pos, _ := m.Origin(); pos.Offset%20 == 0 {
						time.Sleep(time.Millisecond)
					}
					return m.Payload, nil
				}
				a, b := newApp(n, s), newApp(n, s)
				a.fn, b.fn = work, work
				cfg := processor.Config[payload]{CommitPolicy: processor.CommitPolicy{MinInterval: 50 * time.Millisecond}}

				env.Fill(topic, 4, 250, plain)
				ma := startMember(t, be, env, topic, group, assignor, a, cfg)
				waitUntil(t, n, "A to process the first 1000 messages", func() bool { return s.distinct() == 1000 })

				mb := startMember(t, be, env, topic, group, assignor, b, cfg)
				env.Fill(topic, 4, 1000, plain)
				waitUntil(t, n, "B to get partitions and A to keep the rest", func() bool {
					_, _, asgA := a.state()
					_, _, asgB := b.state()
					return len(asgA) > 0 && len(asgB) > 0 && len(asgA)+len(asgB) == 4
				})

				env.Fill(topic, 4, 1000, plain)
				if err := mb.stop(); err != nil {
					t.Fatalf("B's Run: %v", err)
				}
				waitUntil(t, n, "A to get all 4 partitions back", func() bool {
					_, _, asgA := a.state()
					return len(asgA) == 4
				})
				const total = 4 * (250 + 1000 + 1000)
				waitUntil(t, n, "every message processed", func() bool { return s.distinct() == total })

				created, closed, _ := a.state()
				if assignor == kafka.AssignorCooperativeSticky {
					if created != 1 || closed != 0 {
						t.Errorf("under cooperative-sticky A built %d chains and closed %d; want its one chain kept throughout", created, closed)
					}
				} else if created < 2 {
					t.Errorf("under an eager assignor A built %d chains; want a new one after each rebalance", created)
				}
				if err := ma.stop(); err != nil {
					t.Fatalf("A's Run: %v", err)
				}
				committedEqualsEnds(t, env, topic, group)
				dups := s.dups()
				t.Logf("%s: %d of %d messages processed twice", assignor, dups, total)
				if dups > total/10 {
					t.Errorf("%d duplicates of %d messages; a rebalance should redeliver at most what was in flight", dups, total)
				}
			})
		}
	})
}
