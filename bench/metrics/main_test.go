package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/creekstream/creek/metrics
cpu: AMD EPYC
BenchmarkIncrement/mutexmap/goroutines=1-2         	10000000	       100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkIncrement/buffer/goroutines=1-2           	20000000	        50.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkIncrement/mutexmap/goroutines=1-2         	10000000	       120.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkIncrement/buffer/goroutines=1-2           	20000000	        40.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkIncrement/mutexmap/goroutines=1-2         	10000000	       110.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkIncrement/buffer/goroutines=1-2           	20000000	        45.0 ns/op	       0 B/op	       1 allocs/op
PASS
ok  	github.com/creekstream/creek/metrics	6.1s
`

func TestParse(t *testing.T) {
	rep, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if rep.GOOS != "linux" || rep.GOARCH != "amd64" || rep.CPU != "AMD EPYC" {
		t.Errorf("header = %s/%s %q, want linux/amd64 \"AMD EPYC\"", rep.GOOS, rep.GOARCH, rep.CPU)
	}
	want := []result{
		{Name: "BenchmarkIncrement/mutexmap/goroutines=1", Impl: "mutexmap", Goroutines: 1, NsPerOp: 110, IncrementsPerSecond: 1e9 / 110, Runs: 3},
		{Name: "BenchmarkIncrement/buffer/goroutines=1", Impl: "buffer", Goroutines: 1, NsPerOp: 45, IncrementsPerSecond: 1e9 / 45, Runs: 3},
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for i, w := range want {
		if rep.Results[i] != w {
			t.Errorf("result %d = %+v, want %+v", i, rep.Results[i], w)
		}
	}
	var out bytes.Buffer
	if err := rep.writeMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| BenchmarkIncrement/buffer/goroutines=1 | 1 | 45.0 | 2.22e+07 | 2.44x | 0 | 3 |") {
		t.Errorf("the table lacks the buffer row with its ratio to the baseline:\n%s", out.String())
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no benchmarks", "PASS\nok x 1s\n", "no benchmark lines"},
		{"bad number", "BenchmarkX-2 10 abc ns/op\n", "benchmark line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parse(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
