// Package chaos holds the chaos suite: tests only, which run creek's consumers as
// separate processes against a real Kafka broker (and a real Redis for the span
// buffer), do violence to them and to the broker, and account for every message.
//
// Each processor case produces unique ids to an input topic while consumer
// processes (cmd/chaos-consumer, on the sarama backend of package kafka and on
// package kafka/franz) append every message they process to a file of their own
// before its offset can be committed. The test reads the files and the input topic
// back and prints in / out / lost / duplicates per case. It fails on any loss, on a
// message processed again after the group's committed offset had been seen past it,
// on more duplicates than were in flight since the last commit when a member was
// killed, and on a process that exits on its own. The cases:
//
//   - kill9: a member is killed with SIGKILL several times mid-stream and restarted.
//   - churn: members join and leave (SIGTERM) while ids flow, under the range and the
//     cooperative-sticky assignor; graceful leaves commit, so no duplicates are
//     allowed.
//   - broker-outage: the broker is stopped and started again on the same data and
//     port (scripts/kafka-stop, then scripts/kafka-start with CREEK_KAFKA_KEEP_DATA=1);
//     every member must stay alive through it.
//   - state-kill9: keyed-state processes (cmd/chaos-state, state.Count on LevelDB
//     stores with a compacted changelog) count a keyed stream while members are
//     killed with SIGKILL and restarted on their store directories, and a member
//     joins and leaves; the counts read back from the changelog must equal the
//     input's per key. Its no-offset-check half turns the replay check off and
//     must show an overcount.
//   - exactly-once: chaos-eos processes copy ids from an input to an output topic
//     in Kafka transactions (franz.TxnConsumer with pipeline.Transact), under the
//     range and the cooperative-sticky assignor; one member is killed with SIGKILL
//     several times and restarted under its transactional id, a second joins and
//     leaves. A read_committed reader of the output must see every id exactly once.
//     The same run without transactions must show duplicates, so the check can fail.
//   - spanbuffer-kill9: span buffer processes (cmd/chaos-spanbuffer, the ready-made
//     segments.NewConsumer) are killed with SIGKILL while a flush is under way and
//     restarted; every span must come out, in its own segment (lost / duplicates /
//     misplaced, stray); an extra copy in a segment not its own (a fragment) fails
//     the case as a misplaced span does.
//   - spanbuffer-shared-redis: two span buffer deployments share one Redis; each
//     must put out all of its spans and none of the other's.
//   - spanbuffer-redis-loss: the redis-server is restarted empty mid-stream; every
//     span must still come out, in its own segment.
//
// The suite runs only when CREEK_CHAOS is set, "1" for the size CI affords and
// "full" for the larger one, because it stops the broker other tests may be using.
// Without a real broker (CREEK_KAFKA_BROKERS) it skips, or fails with
// CREEK_REQUIRE_REAL=1:
//
//	scripts/kafka-start && scripts/redis-start
//	source scripts/.run/kafka.env && source scripts/.run/redis.env
//	CREEK_CHAOS=1 CREEK_REQUIRE_REAL=1 go test -count=1 -v -timeout 30m ./chaos/
//	scripts/kafka-stop && scripts/redis-stop
package chaos
