package server

// goJob is work for a goroutine of its own (goRun).
type goJob interface{ runJob() }

// goJobs hands goRun's jobs to the goroutines it starts. Every goroutine
// started takes exactly one job, any one: they are alike.
var goJobs = make(chan goJob, 256)

// goRun runs j.runJob on a goroutine of its own, without allocating. A go
// statement whose function captures a value (go j.runJob()) allocates a
// closure for it, 16 bytes dropped once the goroutine has started; opening
// a watch started three (its first read, its opening, its first send), and
// what opening a watch drops in the size classes where idle streams keep
// objects leaves holes next to them for as long as they live (see
// openOnOwnStack). A goroutine on a function that captures nothing
// allocates nothing: it takes its job from goJobs. Should the buffer be
// full, the send waits for goroutines already started, which take a job
// before anything else.
func goRun(j goJob) {
	go runGoJob()
	goJobs <- j
}

func runGoJob() { (<-goJobs).runJob() }
