package benchkit

import (
	"os"
	"runtime/pprof"
)

// StartCPUProfile profiles this process's CPU into file until stop is
// called; with file empty it does nothing (stop too).
func StartCPUProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// WriteProfile writes the named runtime profile ("heap", "allocs",
// "goroutine"...) into file, at that debug level (0: the binary format
// pprof reads).
func WriteProfile(file, profile string, debug int) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(profile).WriteTo(f, debug); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
