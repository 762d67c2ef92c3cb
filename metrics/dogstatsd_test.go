package metrics

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
)

func TestDogStatsDSendsPrefixedNamesTagsAndMilliseconds(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, err := statsd.New(conn.LocalAddr().String(),
		statsd.WithoutTelemetry(), statsd.WithoutClientSideAggregation(), statsd.WithoutOriginDetection())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	tests := []struct {
		name   string
		cfg    DogStatsDConfig
		record func(m Metrics)
		want   string
	}{
		{"counter", DogStatsDConfig{}, func(m Metrics) { m.Increment("consumer.run.count", 3, Tag{"phase", "poll"}) },
			"creek.consumer.run.count:3|c|#phase:poll"},
		{"gauge", DogStatsDConfig{}, func(m Metrics) { m.Gauge("consumer.dlq_buffer.len", 1.5) },
			"creek.consumer.dlq_buffer.len:1.5|g"},
		{"timing", DogStatsDConfig{}, func(m Metrics) { m.Timing("consumer.poll.time", 1500*time.Microsecond) },
			"creek.consumer.poll.time:1.500000|ms"},
		{"own prefix", DogStatsDConfig{Prefix: "svc."}, func(m Metrics) { m.Increment("n", 1, Tag{"a", "b"}, Tag{"c", "d"}) },
			"svc.n:1|c|#a:b,c:d"},
		{"no prefix", DogStatsDConfig{Prefix: "svc.", NoPrefix: true}, func(m Metrics) { m.Increment("n", 1) },
			"n:1|c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDogStatsD(client, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.record(d)
			if err := client.Flush(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1024)
			if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("waiting up to 5s for a packet: %v", err)
			}
			if got := strings.TrimSpace(string(buf[:n])); got != tt.want {
				t.Errorf("packet %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewDogStatsDNeedsClient(t *testing.T) {
	if _, err := NewDogStatsD(nil, DogStatsDConfig{}); err == nil || !strings.Contains(err.Error(), "needs a client") {
		t.Errorf("NewDogStatsD(nil) = %v, want an error saying it needs a client", err)
	}
}
