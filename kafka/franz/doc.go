// Package franz is creek's second Kafka backend, built on franz-go's kgo client
// beside the sarama one in package kafka. It offers the same pieces:
//
//   - Consumer, a processor.Consumer (and processor.Fetcher) on a kgo consumer
//     group: Poll hands out one message at a time from the records kgo fetched,
//     assignment changes reach the processor's RebalanceCallbacks on the
//     goroutine that calls Poll, partitions pause and resume without leaving the
//     group, offsets move only through Commit, and Fetch reads one message again
//     by offset for the dead-letter queue.
//   - Producer, an asynchronous producer whose Produce returns a
//     processor.Delivery resolved with the position the record was written to.
//   - and for the dead-letter queue, kafka.NewDLQProducer takes a franz Producer
//     as it takes a sarama one.
//   - TxnConsumer, a Consumer whose client is also a transactional producer: the
//     records pipeline.Transact writes through it and the offsets the processor
//     commits are committed in one Kafka transaction, with the group's member id
//     and generation (KIP-447), so a pipeline from Kafka to Kafka is exactly once
//     for read_committed readers. A transaction that fails is aborted and the
//     consumer fails with ErrTxnAborted; see txn.go.
//
// How the consumer works: one reader goroutine calls kgo's PollRecords with
// BlockRebalanceOnPoll, so no rebalance callback can run between the moment kgo
// returns records and the moment the reader stamps each partition's records with
// the claim (epoch) they were read under; then it allows rebalances and queues
// the records. kgo's OnPartitionsAssigned, OnPartitionsRevoked and
// OnPartitionsLost record events that Poll turns into OnAssign, OnRevoke and
// OnLost calls on the processor's goroutine; a revocation waits (at most
// RevokeTimeout) until the processor has handled it, so the processor commits
// before the partitions go. kgo reports partitions lost when the group session
// ends without a rebalance: any heartbeat, join or sync error other than
// REBALANCE_IN_PROGRESS, such as UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION after
// the session timed out, or FENCED_INSTANCE_ID (which kgo also reports as a
// fetch error, and the consumer takes as fatal). They reach OnLost (OnRevoke if
// OnLost is nil) without waiting, Commit refuses them at once (ErrNotOwned), and
// the consumer commits nothing for them itself; kgo rejoins, and partitions
// assigned again are read from their committed offsets.
// Queued records of a partition the processor no longer owns are dropped. The
// hand-out of records, the pause bookkeeping and the running of events are
// package kafka's too, shared through an internal package.
//
// Topics are handled as package kafka handles them: Subscribe refuses a name
// kafka.ValidateTopic refuses; a topic that does not exist yet is waited for,
// with the same rate-limited log (MissingTopicLogInterval); the consumer never
// creates a topic, and refuses kgo.AllowAutoTopicCreation among ClientOptions. A
// name the broker itself refuses fails Poll.
//
// Configuration errors, and the errors the package wraps, start with "franz: ".
// Where the two backends mean the same thing, the sentinel errors are package
// kafka's (kafka.ErrClosed, kafka.ErrNotSubscribed, kafka.ErrOffsetGone,
// kafka.ErrProducerClosed), so errors.Is works the same with either backend.
package franz
