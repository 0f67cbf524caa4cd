// Package benchkit holds what the load tools (cmd/callbench, cmd/sipbench,
// cmd/callsoak and the peer benchmark in bench/etcd) share, so that they
// report and measure the same way: the machine line with its load
// average, the targets table and JSON summary, readings of a process's
// CPU time and resident set from /proc, this process's work counters
// (CPU, allocations, write calls) per event, the handle on a child
// process that speaks a line protocol on its stdin and stdout, CPU and
// runtime profiles, and flag parsing.
//
// What a benchmark measures stays in its own command; only the plumbing
// around the measurement is here.
package benchkit
