package benchkit

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// ParseFlags parses args with fs and refuses positional arguments: the
// load tools take flags only.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return nil
}

// ExitOnFlagError ends a tool whose flags did not parse: asked for help
// (flag.ErrHelp: the usage is printed already), it exits 0; on any other
// error it prints "tool: error" and exits 2. With err nil it returns.
func ExitOnFlagError(tool string, err error) {
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", tool, err)
		os.Exit(2)
	}
}
