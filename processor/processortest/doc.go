// Package processortest provides test doubles for code that runs on a
// processor.StreamProcessor, the way net/http/httptest does for handlers: a Consumer
// over an in-memory log, a scriptable terminal Strategy with the Factory that builds
// it, an ordered record of what happened (Events), and a Harness that runs a real
// StreamProcessor over them.
//
// A test of a user's own factory runs the processor over the fake Consumer and
// watches the commits:
//
//	func TestMyFactory(t *testing.T) {
//		h := processortest.NewHarness(t, nil, myFactory, processor.Config[string]{})
//		h.Consumer.Produce(p0, "a", "b", "c")
//		h.Start()
//		h.Consumer.Assign(p0)
//		h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
//		if err := h.Stop(); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// A test of a strategy puts it in front of the fake Strategy, which records what
// reaches it, and builds both with a Factory's Setup or its own processor.Factory.
//
// Rebalances asked for with Consumer.Assign, Revoke, Lose or Rebalance run inside the
// next Poll, as a real consumer's callbacks do, so they happen on the processor's
// goroutine. Every double records into one Events, so a test can assert on the order
// of commits, closes and rebalances across them.
package processortest
