// Package inflight holds the mechanisms every step with asynchronous work shares:
// a queue that hands finished work on strictly in the order it was started, a slot
// for the one message a next step rejected, the retry loop that offers held work to
// a next step that rejects it, and a bounded wait for goroutines to exit.
//
// A Queue or Slot has one owner, the goroutine that pushes to it and forwards from
// it (the processor's loop goroutine, for a strategy); the goroutines doing the work
// only close the done channel of their entry.
package inflight
