// Package pipeline writes a processing chain in the order data flows through it,
// from the consumer to the commit, and builds the processor.Factory that runs it.
//
// A pipeline starts with From (or FromKafka) and goes on with one operator per
// step; Commit ends it:
//
//	orders := pipeline.Map(pipeline.FromKafka(), parseOrder)
//	enriched := pipeline.MapConcurrent(orders, enrich, 16)
//	out := pipeline.Map(pipeline.Batch(enriched, 100, time.Second), encodeBatch)
//	factory := pipeline.Commit(pipeline.Produce(out, producer, "orders-enriched"))
//
// Go methods cannot take type parameters, so the operators are functions over a
// Stage[S, T]: S is what the consumer reads and T what flows at that point. The
// types follow from the functions given, so only the source names one.
//
// Every operator is one of the strategies of package strategies, which stay the
// building blocks: Map and MapMessage are RunTask, MapConcurrent is
// RunTaskConcurrently, Filter, FlatMap (Unfold), Batch, BatchMessages and Reduce,
// Produce, Healthcheck and Commit (CommitOffsets). Through puts any other strategy,
// your own included, into the pipeline. The chain is built back to front each time
// the processor asks for one, at every rebalance.
//
// # Functions and invalid messages
//
// The functions of Map, MapConcurrent, Filter, FlatMap and Reduce take payloads;
// MapMessage, BatchMessages and Through reach the messages, for offsets and
// timestamps. A function gets the message's context (processor.Message.Context).
// Its error stops the processor, unless it wraps Invalid: the message then goes to
// the dead-letter queue (processor.Config.DLQ) and its offset is committed.
//
// # Errors
//
// Operators return no error. The configuration of every step (a concurrency, a
// batch limit, a topic, a producer, a function that is missing) is checked once,
// when processor.New validates the Factory, by building each step once; New fails
// with an error that names every wrong step by position and operator, such as
//
//	processor: New: pipeline: step 2 (MapConcurrent): strategies: run task concurrently: concurrency is 0, need at least 1 goroutine
//
// A Factory that was never validated reports the same errors from Create.
//
// # Logging and metrics
//
// The logger and metrics are given once, in processor.Config. processor.New hands
// them to the Factory (Instrument), which gives them to every step it builds and to
// the producers of Produce steps, and to the consumer; the Kafka consumers and
// producers take them where their own configuration left them unset. A step given
// strategies.WithLogger or strategies.WithMetrics keeps its own.
package pipeline
