package benchkit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
)

// Check is one performance target (docs/BENCHMARKS.md lists them) and
// whether the run met it.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // ">=" or "<="
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
}

// Checks are a run's targets, in the order the report lists them.
type Checks []Check

// Add appends the target "name: v op target" (op ">=" or "<=") and
// whether v meets it.
func (cs *Checks) Add(name string, v float64, op string, target float64) {
	met := v >= target
	if op == "<=" {
		met = v <= target
	}
	*cs = append(*cs, Check{Name: name, Value: v, Op: op, Target: target, Met: met})
}

// AllMet reports whether every target was met (true when there are none).
func (cs Checks) AllMet() bool {
	for _, c := range cs {
		if !c.Met {
			return false
		}
	}
	return true
}

// WriteTable prints the targets as a table: name, value, target, and
// "met" or "MISSED".
func (cs Checks) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\ttarget\tresult\t")
	for _, c := range cs {
		res := "met"
		if !c.Met {
			res = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%g\t%s %g\t%s\t\n", c.Name, c.Value, c.Op, c.Target, res)
	}
	_ = tw.Flush()
}

// Round3 rounds a non-negative x to three decimals, as the reports print
// their figures.
func Round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// Median is the middle of v (the mean of the middle two, Round3, for an
// even count); 0 for none. The benchmarks that alternate two kinds in
// pairs of rounds check the median of the pairs' ratios: a ratio of the
// summed rates follows whichever kind's rounds a neighbour slowed most,
// a pair's two rounds ran within seconds of each other.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return Round3((s[m-1] + s[m]) / 2)
}

// WriteJSON prints a blank line and the indented JSON of summary to w
// (after the table the caller printed), and writes the same JSON to file
// if file is not empty.
func WriteJSON(w io.Writer, summary any, file string) error {
	b, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	fmt.Fprintln(w)
	if _, err := w.Write(b); err != nil {
		return err
	}
	if file != "" {
		return os.WriteFile(file, b, 0o644)
	}
	return nil
}
