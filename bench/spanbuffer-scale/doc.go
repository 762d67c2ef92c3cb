// Package spanbufferscale measures the span buffer run as several processes of one
// consumer group on a real three-master Redis Cluster: the scale-out of issue 15.
//
// BenchmarkScaleOut has one sub-benchmark per group size, processes=1, 2 and 3.
// Each starts that many spanbuffer-member processes (cmd/spanbuffer-member, the
// ready-made consumer segments.NewConsumer on franz-go, its Redis a
// redis.ClusterClient), waits until the group is stable with every partition of
// the input topic assigned, and only then produces b.N spans (traces of five, each
// trace in one of 16 partitions). Starting the members first keeps rebalances out
// of the measurement: a member joining while the others consume would move
// partitions whose offsets are not committed yet, and the timing would depend on
// the order the processes came up in. The clock runs from the first span produced
// until the members have reported every span acknowledged by Kafka; the producer
// is quicker than the consumers, so most of the run is the consumers working
// through a backlog.
//
// Per group size it reports spans/s, the members' CPU per span summed over the
// processes (utime and stime of /proc/<pid>/stat over the measured window), the
// Redis CPU per span summed over the three masters (INFO cpu on each, before and
// after), the busiest master's cores, the machine's busy cores (/proc/stat: the
// broker, the masters, the members and this process together) and the load
// average. Then it stops the members, reads the output topic to its end and checks
// that every span came out exactly once, marked with its own trace's root as its
// segment, the root alone marked is_segment, and every trace in one message of its
// own: any loss, duplicate, misplaced span or split trace fails the benchmark,
// after its figures are reported. A rebalance during the measured window is
// reported too (it should be 0).
//
// The benchmark empties every master of the Cluster (FLUSHALL) before each run, as
// the store's tests do, so point it at a Cluster of your own:
//
//	scripts/redis-start && scripts/kafka-start
//	source scripts/.run/kafka.env; source scripts/.run/redis.env
//	go test -run '^$' -bench BenchmarkScaleOut -benchtime 200000x ./bench/spanbuffer-scale/
//
// One group size: -bench 'BenchmarkScaleOut/processes=2$'. Without
// CREEK_KAFKA_BROKERS and CREEK_REDIS_CLUSTER_ADDRS it skips (with
// CREEK_REQUIRE_REAL=1 it fails instead). docs/benchmarks.md has the figures and
// docs/spanbuffer.md how to size a deployment from them.
package spanbufferscale
