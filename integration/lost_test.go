package integration

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

// TestFencedMemberKeepsRunning: a member removed from the group by the broker while
// it holds uncommitted work (here: a static member that an admin removes, which is
// how a real broker fences one) loses its partitions. Its processor keeps running,
// drops the work without committing it, rejoins and resumes from the last commit:
// every message is processed, Run does not fail, and the group ends committed at
// the partition ends.
func TestFencedMemberKeepsRunning(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(2), env.Group()
		const perPartition = 200
		env.Fill(topic, 2, perPartition, plain)

		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		a.gate = &gate{closed: true}
		rec := metricstest.NewRecorder()
		const id = "fenced-member"
		m := runMember(t, staticConsumer(t, b, env, group, id), a, processor.Config[payload]{
			Topics:  []string{topic},
			Metrics: rec,
		})
		waitUntil(t, n, "the first messages read", func() bool { return s.distinct() > 0 })

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		admin := kadm.NewClient(mustClient(t, env))
		resp, err := admin.LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs(id).Reason("fenced by TestFencedMemberKeepsRunning"))
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("removing the member from the group: %v", err)
		}
		if err := rec.Wait(ctx, func() bool { return rec.Counter("consumer.partitions_lost.count") >= 1 }); err != nil {
			t.Fatalf("waiting for the member to lose its partitions: %v (lost %d, revoked %d)", err,
				rec.Counter("consumer.partitions_lost.count"), rec.Counter("consumer.partitions_revoked.count"))
		}
		a.gate.set(false)
		waitUntil(t, n, "every message processed after the member rejoined", func() bool { return s.distinct() == 2*perPartition })
		select {
		case err := <-m.done:
			t.Fatalf("Run returned after the member was fenced: %v", err)
		default:
		}
		if err := m.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		committedEqualsEnds(t, env, topic, group)
		t.Logf("lost %d partitions, %d messages processed twice", rec.Counter("consumer.partitions_lost.count"), s.dups())
	})
}
