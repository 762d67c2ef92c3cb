// Package stacks dumps every goroutine's stack for the logs that report something
// stuck: the processor's loop watchdog and the span flusher's supervisor.
package stacks

import "runtime"

// maxDump bounds the dump; a process with that much stack has bigger problems than
// a truncated report.
const maxDump = 64 << 20

// All returns the stacks of every goroutine, growing the buffer until they fit or
// it reaches 64 MiB.
func All() []byte {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= maxDump {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}
