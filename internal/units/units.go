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

// ParseRate parses a link rate into bytes per second: "1Gbit", "100 Mbit",
// "1.5Gbps" (bits, decimal) or "125MB/s", "10MiB/s", "1048576" (bytes).
// "0" and "unlimited" mean no limit and return 0.
func ParseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "unlimited" {
		return 0, nil
	}
	for _, bits := range []struct {
		s string
		m float64
	}{{"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}, {"kbps", 1e3}, {"mbps", 1e6}, {"gbps", 1e9}, {"bit", 1}} {
		if num, ok := strings.CutSuffix(t, bits.s); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 || math.IsNaN(f) || f*bits.m/8 > math.MaxInt64/2 {
				break
			}
			return int64(f * bits.m / 8), nil
		}
	}
	n, err := ParseSize(strings.TrimSuffix(t, "/s"))
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q: want bytes per second (125MB/s, 10MiB/s) or bits (1Gbit, 100Mbit)", s)
	}
	return n, nil
}

// FormatRate renders bytes per second in bits, as links are quoted:
// "1 Gbit/s", "250 Mbit/s"; 0 is "unlimited".
func FormatRate(bps int64) string {
	if bps <= 0 {
		return "unlimited"
	}
	b := float64(bps) * 8
	for _, u := range []struct {
		s string
		m float64
	}{{"Gbit/s", 1e9}, {"Mbit/s", 1e6}, {"kbit/s", 1e3}} {
		if b >= u.m {
			return strconv.FormatFloat(b/u.m, 'g', 4, 64) + " " + u.s
		}
	}
	return strconv.FormatFloat(b, 'g', 4, 64) + " bit/s"
}

// Size is a byte count that reads from YAML and flags as "1GiB".
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	n, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// MarshalText implements encoding.TextMarshaler, in bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// Rate is a rate in bytes per second that reads from YAML and flags as
// "1Gbit" or "125MB/s"; 0 means unlimited.
type Rate int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	n, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = Rate(n)
	return nil
}

// MarshalText implements encoding.TextMarshaler, in bytes per second.
func (r Rate) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(r), 10)), nil }

func (r Rate) String() string { return FormatRate(int64(r)) }
