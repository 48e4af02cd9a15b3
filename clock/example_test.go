package clock_test

import (
	"fmt"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// A Fake clock moves only when told to: a timer fires when the clock
// passes its deadline, without waiting.
func ExampleFake() {
	start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	t := clk.NewTimer(time.Hour)

	clk.Advance(59 * time.Minute)
	select {
	case <-t.C():
		fmt.Println("fired early")
	default:
		fmt.Println("not yet at", clk.Now().Format("15:04"))
	}

	clk.Advance(time.Minute)
	fmt.Println("fired at", (<-t.C()).Format("15:04"))
	// Output:
	// not yet at 12:59
	// fired at 13:00
}
