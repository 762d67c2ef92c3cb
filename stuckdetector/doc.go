// Package stuckdetector notices when a loop or an operation stops making progress and
// says where it is stuck.
//
// A loop updates a Heartbeat on every iteration and names the phase it is in, with
// atomic stores and no allocation: Tick counts iterations without reading the clock.
// A Watchdog, started with Start, reads the heartbeat from its own goroutine and
// times the loop's stalls with its own clock, to within its check interval (a tenth
// of the timeout, at most a second). When the loop has not come round for longer
// than the timeout it logs a warning with the phase, the length of the stall and the stack of every
// goroutine, and counts consumer.stuck. Unlike Arroyo, whose watchdog reports once per
// process and then never again, it reports again at most once per timeout while the
// loop stays stuck, logs the stall's length when the loop recovers, and can run a
// hook (typically: exit, so that an orchestrator restarts the process) after a hard
// limit.
//
// Watch does the same for one named operation, such as a flusher's start-up.
package stuckdetector
