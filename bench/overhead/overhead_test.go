package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunOnInProcessBroker runs every contender once over a small topic on the
// in-process broker and checks what the report says about each of them.
func TestRunOnInProcessBroker(t *testing.T) {
	jsonPath := filepath.Join(t.TempDir(), "results", "overhead.json")
	cfg, err := parseFlags([]string{"-messages", "2000", "-rounds", "1", "-json", jsonPath, "-run-timeout", "30s", "-compression", "none"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	if err := run(ctx, cfg, &out, &log); err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("results are not valid JSON: %v", err)
	}
	if rep.Topic.Messages != 2000 || rep.Topic.Partitions != 4 || rep.Topic.MessageBytes != 100 {
		t.Errorf("topic = %+v, want 2000 messages of 100 bytes over 4 partitions", rep.Topic)
	}
	if rep.Topic.Compression != "none" {
		t.Errorf("topic compression = %q, want none", rep.Topic.Compression)
	}
	if rep.Broker.Name != "in-process franz-go kfake" || len(rep.Broker.Addrs) == 0 {
		t.Errorf("broker = %+v, want the in-process broker and its address", rep.Broker)
	}
	if got, want := len(rep.Contenders), len(contenders); got != want {
		t.Fatalf("%d contenders in the results, want %d", got, want)
	}
	for _, c := range rep.Contenders {
		if len(c.Runs) != 1 {
			t.Errorf("%s: %d runs, want 1", c.Name, len(c.Runs))
			continue
		}
		r := c.Runs[0]
		if !r.Committed {
			t.Errorf("%s: the group did not commit the end of every partition", c.Name)
		}
		if r.Duplicates != 0 {
			t.Errorf("%s: %d messages handled twice", c.Name, r.Duplicates)
		}
		if r.MessagesPerSecond <= 0 || c.MedianMessagesPerSecond != r.MessagesPerSecond {
			t.Errorf("%s: %v messages/s, median %v; want one positive figure", c.Name, r.MessagesPerSecond, c.MedianMessagesPerSecond)
		}
		if c.RatioToSarama <= 0 || c.RatioToFranz <= 0 {
			t.Errorf("%s: ratios to sarama %v and to franz %v, want both > 0", c.Name, c.RatioToSarama, c.RatioToFranz)
		}
		// The consumption time runs from the assignment, which comes after the
		// start and before the first message.
		if r.JoinSeconds <= 0 || r.Seconds <= 0 || r.JoinSeconds+r.Seconds > r.WallSeconds*1.0001 {
			t.Errorf("%s: join %v s + consumption %v s against wall %v s; want both positive and adding up to the wall time", c.Name, r.JoinSeconds, r.Seconds, r.WallSeconds)
		}
		if r.FirstToLastMessagesPerSecond < r.MessagesPerSecond {
			t.Errorf("%s: %v messages/s from the first message, below the %v from the assignment before it", c.Name, r.FirstToLastMessagesPerSecond, r.MessagesPerSecond)
		}
		if !strings.Contains(out.String(), "| "+c.Name+" | ") {
			t.Errorf("the Markdown table has no row for %s:\n%s", c.Name, out.String())
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{7}, 7},
		{"odd", []float64{9, 1, 5}, 5},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := make([]runResult, len(tc.in))
			for i, v := range tc.in {
				runs[i].MessagesPerSecond = v
			}
			if got := median(runs, func(r runResult) float64 { return r.MessagesPerSecond }); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRatiosAndRange(t *testing.T) {
	rep := newReport(config{rounds: 3}, []contenderResult{
		{Name: "creek-franz", Runs: []runResult{{MessagesPerSecond: 180}, {MessagesPerSecond: 150}, {MessagesPerSecond: 160}}},
		{Name: "sarama", Runs: []runResult{{MessagesPerSecond: 100}}},
		{Name: "franz", Runs: []runResult{{MessagesPerSecond: 200}}},
	})
	c := rep.Contenders[0]
	if c.MedianMessagesPerSecond != 160 || c.MinMessagesPerSecond != 150 || c.MaxMessagesPerSecond != 180 {
		t.Errorf("median %v, range %v-%v; want 160, 150-180", c.MedianMessagesPerSecond, c.MinMessagesPerSecond, c.MaxMessagesPerSecond)
	}
	if c.RatioToSarama != 1.6 || c.RatioToFranz != 0.8 {
		t.Errorf("ratios to sarama %v, to franz %v; want 1.6 and 0.8", c.RatioToSarama, c.RatioToFranz)
	}
	noBaseline := newReport(config{rounds: 1}, []contenderResult{{Name: "creek", Runs: []runResult{{MessagesPerSecond: 90}}}})
	if got := noBaseline.Contenders[0]; got.RatioToSarama != 0 || got.RatioToFranz != 0 {
		t.Errorf("ratios without baselines = %v, %v; want 0 (left out)", got.RatioToSarama, got.RatioToFranz)
	}
	var out bytes.Buffer
	if err := rep.writeMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	if want := "| creek-franz | 160 | 150-180 | 1.60 | 0.80 |"; !strings.Contains(out.String(), want) {
		t.Errorf("the Markdown table has no %q:\n%s", want, out.String())
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-messages", "0"}, "-messages"},
		{[]string{"-partitions", "0"}, "-partitions"},
		{[]string{"-rounds", "0"}, "-rounds"},
		{[]string{"-size", "-1"}, "-size"},
		{[]string{"-run-timeout", "0s"}, "-run-timeout"},
		{[]string{"-contenders", "creek,kafka-go"}, `"kafka-go" is unknown`},
		{[]string{"-contenders", ""}, "-contenders is empty"},
		{[]string{"-compression", "brotli"}, `-compression: "brotli" is unknown`},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseFlags(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}
