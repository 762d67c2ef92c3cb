// Package lookup joins a stream against a table: each message is enriched with the
// value a table holds under the message's key, the stream-table join of Kafka
// Streams.
//
// The table is usually a goka View, which keeps a compacted topic replicated in local
// storage; anything with the View's Get and Recovered methods will do. The View lives
// outside the chain: the caller creates it, runs it, and stops it when the processor
// ends, so one View serves every chain a factory builds.
//
// A message is never joined against a table that has not caught up with its topic:
// until the View reports Recovered, Submit rejects with processor.ErrMessageRejected.
// The processor keeps the message and offers it again, and pauses the consumer if the
// wait grows long, so nothing is lost or committed meanwhile.
//
// What happens to a message whose key is missing from the table is the caller's
// decision, made in the JoinFunc: produce a result anyway, return ErrDrop to drop the
// message while still committing its offset, or return processor.Invalid to send it to
// the dead-letter queue.
//
// This package is apart from package strategies so that only programs that join
// against goka tables import goka.
package lookup
