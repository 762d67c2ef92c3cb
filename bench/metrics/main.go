// Command metrics runs the metrics buffer's Go benchmarks and reports them as
// increments per second, next to the mutex-and-map baseline they are compared
// with, as a Markdown table on stdout and as JSON.
//
//	go run ./bench/metrics
//	go run ./bench/metrics -count 5 -json bench/results/metrics.json
//
// It runs `go test -run '^$' -bench Increment -benchmem ./metrics/` -count times,
// passes the raw output through to stderr and reports the median of each
// benchmark. An increment/s figure is 1e9 / ns/op: for the parallel cases ns/op
// is wall time per increment across all goroutines, so the figure is the total
// rate of the buffer.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	count := flag.Int("count", 3, "times to run each benchmark; the median is reported")
	benchtime := flag.String("benchtime", "1s", "go test -benchtime for each run")
	jsonPath := flag.String("json", "bench/results/metrics.json", "where to write the results as JSON; empty writes none")
	flag.Parse()
	if *count < 1 {
		fmt.Fprintf(os.Stderr, "metrics: -count is %d; give at least 1\n", *count)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *count, *benchtime, *jsonPath, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, count int, benchtime, jsonPath string, out, log io.Writer) error {
	args := []string{"test", "-run", "^$", "-bench", "Increment", "-benchmem",
		"-count", strconv.Itoa(count), "-benchtime", benchtime, "./metrics/"}
	fmt.Fprintln(log, "go", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	var raw bytes.Buffer
	cmd.Stdout = io.MultiWriter(&raw, log)
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test: %w", err)
	}
	rep, err := parse(&raw)
	if err != nil {
		return err
	}
	rep.Date = time.Now().UTC().Format(time.RFC3339)
	rep.Command = "go " + strings.Join(args, " ")
	if err := rep.writeMarkdown(out); err != nil {
		return err
	}
	if jsonPath == "" {
		return nil
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	fmt.Fprintf(log, "results written to %s\n", jsonPath)
	return nil
}

// result is the median of one benchmark's runs.
type result struct {
	// Name is the benchmark's name without the GOMAXPROCS suffix.
	Name                string  `json:"name"`
	Impl                string  `json:"impl"`
	Goroutines          int     `json:"goroutines"`
	NsPerOp             float64 `json:"ns_per_op"`
	IncrementsPerSecond float64 `json:"increments_per_second"`
	AllocsPerOp         float64 `json:"allocs_per_op"`
	Runs                int     `json:"runs"`
}

type report struct {
	Date    string   `json:"date"`
	Command string   `json:"command"`
	GOOS    string   `json:"goos"`
	GOARCH  string   `json:"goarch"`
	CPU     string   `json:"cpu"`
	Results []result `json:"results"`
}

// parse reads `go test -bench` output: the goos/goarch/cpu header lines and one
// line per benchmark run, "BenchmarkX/sub-N  iterations  v ns/op  v B/op  v
// allocs/op".
func parse(r io.Reader) (report, error) {
	var rep report
	type runs struct{ ns, allocs []float64 }
	byName := map[string]*runs{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, ": "); ok {
			switch k {
			case "goos":
				rep.GOOS = v
			case "goarch":
				rep.GOARCH = v
			case "cpu":
				rep.CPU = v
			}
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		rr := byName[name]
		if rr == nil {
			rr = &runs{}
			byName[name] = rr
			order = append(order, name)
		}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return rep, fmt.Errorf("benchmark line %q: %w", line, err)
			}
			switch fields[i+1] {
			case "ns/op":
				rr.ns = append(rr.ns, v)
			case "allocs/op":
				rr.allocs = append(rr.allocs, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return rep, err
	}
	if len(order) == 0 {
		return rep, errors.New("the benchmark output has no benchmark lines")
	}
	for _, name := range order {
		rr := byName[name]
		if len(rr.ns) == 0 {
			return rep, fmt.Errorf("benchmark %s reported no ns/op", name)
		}
		res := result{Name: name, NsPerOp: median(rr.ns), AllocsPerOp: median(rr.allocs), Runs: len(rr.ns)}
		res.IncrementsPerSecond = 1e9 / res.NsPerOp
		// BenchmarkIncrement/<impl>/goroutines=<n>
		if parts := strings.Split(name, "/"); len(parts) == 3 {
			res.Impl = parts[1]
			res.Goroutines, _ = strconv.Atoi(strings.TrimPrefix(parts[2], "goroutines="))
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Sorted(slices.Values(v))
	mid := len(v) / 2
	if len(v)%2 == 0 {
		return (v[mid-1] + v[mid]) / 2
	}
	return v[mid]
}

// writeMarkdown prints one row per benchmark, with the buffer's rate relative to
// the baseline at the same number of goroutines.
func (rep report) writeMarkdown(w io.Writer) error {
	baseline := map[int]float64{}
	for _, r := range rep.Results {
		if r.Impl == "mutexmap" {
			baseline[r.Goroutines] = r.IncrementsPerSecond
		}
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "machine: %s/%s, %s\n\n", rep.GOOS, rep.GOARCH, rep.CPU)
	fmt.Fprintln(bw, "| benchmark | goroutines | ns/op (median) | increments/s | vs mutex+map | allocs/op | runs |")
	fmt.Fprintln(bw, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.Results {
		vs := "n/a"
		if b := baseline[r.Goroutines]; b > 0 && r.Impl != "" {
			vs = fmt.Sprintf("%.2fx", r.IncrementsPerSecond/b)
		}
		fmt.Fprintf(bw, "| %s | %d | %.1f | %.3g | %s | %g | %d |\n", r.Name, r.Goroutines, r.NsPerOp, r.IncrementsPerSecond, vs, r.AllocsPerOp, r.Runs)
	}
	return bw.Flush()
}
