// Package units parses and formats byte sizes and rates for flags, config
// files and human-readable output ("4MiB", "1.5 GB/s").
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

var suffixes = []struct {
	s string
	m float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1}, {"", 1},
}

// ParseSize parses "1048576", "1MiB", "1.5 GiB", "10GB" or "4m" into bytes.
// Binary (KiB) and one-letter (k, m, g, t) suffixes are powers of 1024;
// decimal ones (kB, MB) are powers of 1000.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, suf := range suffixes {
		num, ok := strings.CutSuffix(t, suf.s)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || f < 0 || math.IsNaN(f) {
			break
		}
		v := f * suf.m
		if v > math.MaxInt64/2 {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("invalid size %q: want a number of bytes with an optional unit such as KiB, MiB, GiB, MB", s)
}

// FormatSize renders n bytes with a binary unit: "1.00 GiB".
func FormatSize(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if math.Abs(f) < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return fmt.Sprintf("%.2f %s", f, u)
		}
		f /= 1024
	}
	panic("unreachable")
}

// MBps returns bytes per second in MB/s (10^6 bytes), the unit benchmarks report.
func MBps(bytes int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(bytes) / seconds / 1e6
}
