// Package runbench holds the evaluation engine's end-to-end benchmarks:
// the runner, the chain and the provider stack (timeouts, retries, response
// cache) together against the chat-completions test double, measuring what
// an operator waits for and pays for: wall time against the ideal set by
// model latency and concurrency, calls saved by the response cache when a
// variant changes only the last step, engine CPU per model call, and peak
// memory on a large dataset. It has no code outside its benchmarks; they run
// only with -bench.
package runbench
