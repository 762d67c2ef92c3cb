package segments

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// payloadProducer acknowledges every write at once and hands its payload to the
// test.
type payloadProducer chan processor.KafkaPayload

func (p payloadProducer) Produce(_ context.Context, _ string, payload processor.KafkaPayload) *processor.Delivery {
	p <- payload
	d := processor.NewDelivery()
	d.Resolve(processor.Position{}, nil)
	return d
}

func (p payloadProducer) next(t *testing.T, what string) processor.KafkaPayload {
	t.Helper()
	select {
	case m := <-p:
		return m
	case <-time.After(waitLong):
		t.Fatalf("no segment produced within %v: waited for %s", waitLong, what)
		return processor.KafkaPayload{}
	}
}

func TestFlusherWritesTheRootSpansTraceParent(t *testing.T) {
	cases := []struct {
		name string
		omit bool
		root bool
		want string // "" for no header
	}{
		{name: "root", root: true, want: "00-" + hexID(5, 32) + "-" + hexID(5, 16) + "-01"},
		{name: "root, header omitted", root: true, omit: true},
		// Spans of another project's parent: flushed without a root, nothing to name.
		{name: "no root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := flusherRedis(t)
			p := make(payloadProducer, 10)
			cfg := fastConfig(p)
			cfg.OmitTraceParent = tc.omit
			r := newRig(t, client, store.Config{}, cfg)
			at := time.Now().Add(-time.Hour)
			if tc.root {
				ingestRoot(t, r.buf, 0, 5, at)
			} else {
				s, err := store.Decode(spanJSON(hexID(5, 32), hexID(6, 16), hexID(5, 16)), 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r.buf.Ingest(context.Background(), []store.Span{s}, store.At(at)); err != nil {
					t.Fatal(err)
				}
			}
			r.start(t, 0)
			msg := p.next(t, "the segment")
			var got []string
			for _, h := range msg.Headers {
				if h.Key == HeaderTraceParent {
					got = append(got, string(h.Value))
				}
			}
			switch {
			case tc.want == "" && len(msg.Headers) != 0:
				t.Fatalf("segment message headers %+v, want none", msg.Headers)
			case tc.want != "" && (len(got) != 1 || got[0] != tc.want):
				t.Fatalf("segment message traceparent %q, want [%s]", got, tc.want)
			}
		})
	}
}
