package run

import "runtime/debug"

// GCPercent is the garbage collector's target fapo's commands run with
// when GOGC is not set. A run's live heap is a few megabytes, so at Go's
// default of 100 the heap's floor (4 MB) starts a collection every few
// hundred model calls, each waking every idle processor to mark; at 200
// they come half as often, for a few megabytes of peak RSS. On the floor
// benchmark (2,000 cases × 1 step at 30 ms) it took 3–14 % off the CPU
// per call, alternating run by run with the default.
const GCPercent = 200

// SetGCPercent applies GCPercent unless getenv("GOGC") chooses otherwise.
func SetGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
