package strictjson

import "testing"

// plainRun, eight bytes at a time, stops where a byte-at-a-time scan
// stops: at the first quote, backslash, control character or non-ASCII
// byte, whatever the bytes around it and wherever it lies in its word.
func TestPlainRun(t *testing.T) {
	slow := func(data []byte, j int) int {
		for j < len(data) && data[j] < 0x80 && plain[data[j]] {
			j++
		}
		return j
	}
	buf := make([]byte, 19)
	for b := range 256 {
		for a := range 256 { // what comes before and after it
			for pos := range len(buf) {
				for i := range buf {
					buf[i] = byte(a)
				}
				buf[pos] = byte(b)
				for start := range 3 {
					if got, want := plainRun(buf, start), slow(buf, start); got != want {
						t.Fatalf("plainRun(% x, %d) = %d, want %d", buf, start, got, want)
					}
				}
			}
		}
	}
}
